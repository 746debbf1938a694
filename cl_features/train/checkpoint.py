"""Checkpoints of one training run: exact resume, preemption, corrupt-checkpoint fallback, config guard.

A `Checkpointer` wraps an orbax `CheckpointManager` over `directory` (`<workdir>/<run>/checkpoints`, the same
for every process). A step `<directory>/<step>/` holds `state` (the TrainState), `meta` ({"step", "log": the
last metrics row}), `config` (checked on resume) and, for runs that read host batches, `data` (each process's
grain iterator state). Orbax writes a step into `<step>.orbax-checkpoint-tmp*` and renames it when complete: a
half-written one (a kill during an async save) is reported and ignored. A step that fails to load is reported
by path, renamed to `<step>.corrupt` (never deleted) and the one before it is used. SIGTERM makes the next
`maybe_save` save that step and raise `Preempted` (the caller exits 0; the same command resumes); each step
boundary of a multi-process run all-gathers the SIGTERM flags, so all processes stop at the same step. A
non-finite loss or state is never saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util
from jax.experimental import multihost_utils

from cl_features import workdir

# Fields that may change between a checkpoint and its resume: they do not change the numbers of a step.
MUTABLE_FIELDS = ("train.steps", "train.log_every", "train.steps_per_call", "train.num_devices", "checkpoint")
_MISSING = object()
# Fields added to the configs after checkpoints were written without them, with the value that reproduces the
# older runs: absent on one side and this value on the other counts as unchanged (the image objectives).
ADDED_FIELDS = {
    "objective.name": "nt_xent",
    "objective.predictor_layers": 2,
    "objective.predictor_hidden_dim": None,
    "objective.ema_momentum": 0.99,
    "objective.ema_schedule": "cosine",
}


class Preempted(Exception):
    """The run saved `step` in `directory` after a preemption notice and should exit 0."""

    def __init__(self, step: int, directory: str):
        super().__init__(f"preempted: saved step {step} in {directory}")
        self.step, self.directory = step, directory


class ConfigMismatch(ValueError):
    """Resuming with a config that changes the meaning of the run."""


class Restored(NamedTuple):
    state: Any  # the TrainState, placed like the one passed to `restore`
    step: int
    log: dict | None  # the last metrics row logged before the checkpoint


def _not_orbax(record: logging.LogRecord) -> bool:
    return f"{os.sep}orbax{os.sep}" not in record.pathname


def _not_orbax_info(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or _not_orbax(record)


def say(msg: str) -> None:
    """A report line on process 0."""
    if jax.process_index() == 0:
        print(f"[checkpoint] {msg}", flush=True)


def _flat(tree: dict) -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, after a JSON round trip (tuples -> lists)."""
    return traverse_util.flatten_dict(json.loads(json.dumps(tree)), sep=".")


def config_diff(saved: dict, current: dict, mutable: tuple[str, ...] = MUTABLE_FIELDS) -> list[str]:
    """Dotted fields whose values differ (present in only one counts, except an ADDED_FIELDS field at its value
    there), except `mutable` ones and their children."""
    a, b = _flat(saved), _flat(current)

    def differs(k):
        x, y = a.get(k, _MISSING), b.get(k, _MISSING)
        if k in ADDED_FIELDS and _MISSING in (x, y):
            return (y if x is _MISSING else x) != ADDED_FIELDS[k]
        return x != y

    changed = sorted(k for k in a.keys() | b.keys() if differs(k))
    return [k for k in changed if not any(k == m or k.startswith(m + ".") for m in mutable)]


def describe_diff(saved: dict, current: dict, fields: list[str]) -> str:
    """'field: old -> new; ...' for `fields` (a value missing on one side is shown as (absent))."""
    a, b = _flat(saved), _flat(current)
    show = lambda v: "(absent)" if v is _MISSING else json.dumps(v)  # noqa: E731
    return "; ".join(f"{k}: {show(a.get(k, _MISSING))} -> {show(b.get(k, _MISSING))}" for k in fields)


def check_config(saved: dict, current: dict, mutable: tuple[str, ...], path: str) -> None:
    """Raises ConfigMismatch (one line naming the fields) if resuming `path`, saved with `saved`, changes the run."""
    fields = config_diff(saved, current, mutable)
    if fields:
        raise ConfigMismatch(
            f"refusing to resume {path}: the config changes the run in {', '.join(fields)} "
            f"({describe_diff(saved, current, fields)}); use another workdir or restore these values "
            f"(allowed to change: {', '.join(mutable)})"
        )


def saved_config(directory: str) -> tuple[int, dict] | None:
    """(step, config) of the newest checkpoint in `directory` whose config reads, without reading its state or
    writing anything; None if there is none."""
    if not workdir.path(directory).is_dir():
        return None
    log = logging.getLogger("absl")
    log.addFilter(_not_orbax)  # orbax's notes on a read-only manager and its INFO lines: not the user's business
    manager = ocp.CheckpointManager(workdir.absolute(directory), options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        for step in sorted(manager.all_steps(), reverse=True):
            with contextlib.suppress(Exception):  # an unreadable step: `restore` reports it; try the one before
                return step, manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
    finally:
        manager.close()
        log.removeFilter(_not_orbax)
    return None


_sigterm = threading.Event()  # set by SIGTERM while a Checkpointer is open


def preemption_requested() -> bool:
    """Whether every process should save and stop now. Call once per step boundary on every process."""
    if jax.process_count() == 1:
        return _sigterm.is_set()
    return bool(np.any(multihost_utils.process_allgather(np.int32(_sigterm.is_set()))))


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.bool_(True)] + [jnp.all(jnp.isfinite(x)) for x in leaves]))


def _data(it, save: bool = False) -> dict:
    """{"data": grain's orbax argument} for an iterator with state (a grain DataLoader's), else {}."""
    if not (callable(getattr(it, "get_state", None)) and callable(getattr(it, "set_state", None))):
        return {}
    import grain.checkpoint  # registers grain's orbax handler

    return {"data": (grain.checkpoint.CheckpointSave if save else grain.checkpoint.CheckpointRestore)(it)}


class Checkpointer(contextlib.AbstractContextManager):  # `with` closes it
    """One run's checkpoints in `directory`: `config` (JSON-able) is saved with each and checked on restore,
    except `mutable_fields`; a save every `every` steps (0: only at the end and on preemption), the newest
    `max_to_keep` kept. Saves are asynchronous (the device-to-host copy blocks, the writing does not)."""

    def __init__(
        self, directory: str, *, config: dict, every: int = 0, max_to_keep: int = 2, mutable_fields=MUTABLE_FIELDS
    ):
        self.directory, self.config = workdir.absolute(directory), json.loads(json.dumps(config))
        self.every, self.mutable_fields = every, tuple(mutable_fields)
        self.last_log: dict | None = None
        self.resumed_changes: list[str] = []  # allowed config fields that differ from the restored checkpoint's
        logging.getLogger("absl").addFilter(_not_orbax_info)  # orbax's INFO lines, several per save (added once)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread
        self._previous_handler = signal.signal(signal.SIGTERM, lambda *_: _sigterm.set()) if main else _MISSING

    def step_path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def kept_message(self) -> str:
        step = self._manager.latest_step()
        if step is None:
            return f"no checkpoint was saved yet in {self.directory}"
        return f"the last good checkpoint is step {step} in {self.step_path(step)}"

    def restore(self, state, data_iter=None, saved: tuple[int, dict] | None = None) -> Restored | None:
        """The newest readable checkpoint, placed like `state` (its shardings); None if there is none.
        saved: (step, config) already read from this directory (`saved_config`): that step's config is not read
        again.

        Raises ConfigMismatch (one line naming the fields) if it was saved with a config that changes the run,
        RuntimeError if checkpoints exist but none can be read (nothing is renamed then).
        """
        for tmp in sorted(str(p) for p in workdir.path(self.directory).glob("*.orbax-checkpoint-tmp*")):
            say(f"ignoring half-written checkpoint {tmp}")
        self._manager.reload()
        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        items = {"state": ocp.args.StandardRestore(abstract), "meta": ocp.args.JsonRestore(), **_data(data_iter)}
        bad = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            path = self.step_path(step)
            try:
                config = saved[1] if saved is not None and saved[0] == step else self._read_config(step)
                self._check(config, path, "data" in items)
                out = self._manager.restore(step, args=ocp.args.Composite(**items))
                if int(jax.device_get(out.state.step)) != step:
                    raise ValueError(f"its state is at step {int(jax.device_get(out.state.step))}")
            except ConfigMismatch:
                raise
            except Exception as e:  # noqa: BLE001  (any failure to read means the checkpoint is unusable)
                bad.append((step, f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"))
                say(f"checkpoint {path} is unreadable ({bad[-1][1]}); trying the one before it")
                continue
            self._quarantine([s for s, _ in bad])
            self.last_log = out.meta.get("log")
            self.resumed_changes = config_diff(config, self.config, mutable=())
            say(f"resuming from step {step} ({path})")
            if self.resumed_changes:
                say(f"with changed {describe_diff(config, self.config, self.resumed_changes)}")
            return Restored(state=out.state, step=step, log=self.last_log)
        if bad:
            why = "; ".join(f"step {s}: {why}" for s, why in bad)
            raise RuntimeError(f"no readable checkpoint in {self.directory}: {why}. Move it away to start afresh.")
        return None

    def _read_config(self, step: int) -> dict:
        return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config

    def _check(self, saved: dict, path: str, with_data: bool) -> None:
        check_config(saved, self.config, self.mutable_fields, path)
        if with_data and not workdir.path(path, "data").is_dir():
            raise ConfigMismatch(f"{path} holds no data-iterator state (saved by a run without one)")

    def _quarantine(self, steps: list[int]) -> None:
        """Renames unusable step directories to `<step>.corrupt[.n]` so that step can be saved again."""
        if not steps:
            return
        if jax.process_index() == 0:
            for step in steps:
                src = self.step_path(step)
                dst, n = src + ".corrupt", 1
                while workdir.path(dst).exists():
                    dst, n = f"{src}.corrupt.{n}", n + 1
                workdir.path(src).rename(dst)
                say(f"kept the unusable checkpoint as {dst}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint quarantine {self.directory}")
        self._manager.reload()

    def maybe_save(
        self, step: int, state, *, force: bool = False, loss=None, log_row: dict | None = None, data_iter=None
    ) -> bool:
        """At every step boundary (every process): saves when `step` is a multiple of `every`, when `force` (the
        last step) or on preemption, then, on preemption (unless `force`), waits and raises Preempted."""
        if log_row is not None:
            self.last_log = dict(log_row)
        stop = preemption_requested()
        due = force or stop or (self.every > 0 and step % self.every == 0)
        latest = self._manager.latest_step()
        saved = due and (latest is None or step > latest)
        if saved:
            self.save(step, state, loss=loss, data_iter=data_iter)
        if stop and not force:
            self._manager.wait_until_finished()
            _sigterm.clear()
            raise Preempted(self._manager.latest_step(), self.directory)
        return saved

    def save(self, step: int, state, *, loss=None, data_iter=None) -> None:
        """Saves `state` as `step` (async); refuses (FloatingPointError) a non-finite loss or state."""
        finite = loss is None or math.isfinite(float(jax.device_get(loss)))
        if not (finite and bool(jax.device_get(_all_finite(state)))):
            raise FloatingPointError(f"non-finite loss or state at step {step}, not saved; {self.kept_message()}")
        items = {
            "state": ocp.args.StandardSave(state),
            "meta": ocp.args.JsonSave({"step": int(step), "log": self.last_log}),
            "config": ocp.args.JsonSave(self.config),
            **_data(data_iter, save=True),
        }
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves; puts back the SIGTERM handler that was there before."""
        try:
            self._manager.wait_until_finished()
            self._manager.close()
        finally:
            if self._previous_handler is not _MISSING:  # None: not set from Python; the default is the closest
                signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)
                self._previous_handler = _MISSING

    def __exit__(self, *exc) -> None:
        self.close()
