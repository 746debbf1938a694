"""Checkpoints of one run (README "Resuming"): `<directory>/<step>/` holds `state` (the TrainState), `meta`
({"step", "log": the last metrics row}), `config` (checked on resume) and, with host batches, `data` (grain state)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from cl_features import workdir
from cl_features.train.config_guard import MUTABLE_FIELDS, ConfigMismatch, check_config, config_diff, describe_diff


class Preempted(Exception):
    """The run saved `step` in `directory` after a preemption notice and should exit 0."""

    def __init__(self, step: int, directory: str):
        super().__init__(f"preempted: saved step {step} in {directory}")
        self.step, self.directory = step, directory


class Restored(NamedTuple):
    state: Any  # the TrainState, placed like the one passed to `restore`
    step: int


def _not_orbax(record: logging.LogRecord) -> bool:
    return f"{os.sep}orbax{os.sep}" not in record.pathname


def _not_orbax_info(record: logging.LogRecord) -> bool:  # orbax's INFO lines, several per save
    return record.levelno >= logging.WARNING or _not_orbax(record)


def say(msg: str) -> None:  # on process 0
    if jax.process_index() == 0:
        print(f"[checkpoint] {msg}", flush=True)


def _read_config(manager: ocp.CheckpointManager, step: int) -> dict:
    return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config


def saved_config(directory: str) -> tuple[int, dict] | None:
    """(step, config) of the newest checkpoint whose config reads (no state read, nothing written); None: none."""
    if not workdir.path(directory).is_dir():
        return None
    log = logging.getLogger("absl")
    log.addFilter(_not_orbax)  # orbax's notes on a read-only manager
    manager = ocp.CheckpointManager(workdir.absolute(directory), options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        for step in sorted(manager.all_steps(), reverse=True):
            with contextlib.suppress(Exception):  # an unreadable step: `restore` reports it
                return step, _read_config(manager, step)
    finally:
        manager.close()
        log.removeFilter(_not_orbax)
    return None


_sigterm = threading.Event()  # set by SIGTERM while a Checkpointer is open


def preemption_requested() -> bool:
    """Whether every process should save and stop now. Call at each step boundary on every process."""
    flag = np.int32(_sigterm.is_set())
    return bool(flag if jax.process_count() == 1 else np.any(multihost_utils.process_allgather(flag)))


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


class Checkpointer(contextlib.ExitStack):
    """`config` is saved with each checkpoint and checked on restore (except `mutable_fields`); an async save every
    `every` steps (0: only at the end and on preemption), `max_to_keep` kept. Leaving `with` or close() waits for
    pending saves and puts back the SIGTERM handler that was there before."""

    def __init__(
        self, directory: str, *, config: dict, every: int = 0, max_to_keep: int = 2, mutable_fields=MUTABLE_FIELDS
    ):
        self.directory, self.config = workdir.absolute(directory), json.loads(json.dumps(config))
        self.every, self.mutable_fields = every, tuple(mutable_fields)
        self.last_log: dict | None = None
        self.resumed_changes: list[str] = []  # allowed config fields that differ from the restored checkpoint's
        logging.getLogger("absl").addFilter(_not_orbax_info)  # added once
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        super().__init__()  # its callbacks run last to first on close()
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            previous = signal.signal(signal.SIGTERM, lambda *_: _sigterm.set())  # None: not set from Python
            self.callback(signal.signal, signal.SIGTERM, previous or signal.SIG_DFL)
        self.callback(self._manager.close)

    def kept_message(self) -> str:
        if (step := self._manager.latest_step()) is None:
            return f"no checkpoint was saved yet in {self.directory}"
        return f"the last good checkpoint is step {step} in {os.path.join(self.directory, str(step))}"

    def restore(self, state, data_iter=None, saved: tuple[int, dict] | None = None) -> Restored | None:
        """The newest readable checkpoint, placed like `state` (None: none). saved: `saved_config`'s (step, config).
        Raises ConfigMismatch for a config that changes the run, RuntimeError if none reads (nothing renamed)."""
        for tmp in sorted(str(p) for p in workdir.path(self.directory).glob("*.orbax-checkpoint-tmp*")):
            say(f"ignoring half-written checkpoint {tmp}")
        self._manager.reload()
        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        items = {"state": ocp.args.StandardRestore(abstract), "meta": ocp.args.JsonRestore(), **_data(data_iter)}
        bad = {}  # step: why it is unreadable
        for step in sorted(self._manager.all_steps(), reverse=True):
            path = os.path.join(self.directory, str(step))
            try:
                config = saved[1] if saved is not None and saved[0] == step else _read_config(self._manager, step)
                check_config(config, self.config, self.mutable_fields, path)
                if "data" in items and not workdir.path(path, "data").is_dir():
                    raise ConfigMismatch(f"{path} holds no data-iterator state (saved by a run without one)")
                out = self._manager.restore(step, args=ocp.args.Composite(**items))
                if (at := int(jax.device_get(out.state.step))) != step:
                    raise ValueError(f"its state is at step {at}")
            except ConfigMismatch:
                raise
            except Exception as e:  # noqa: BLE001  (any failure to read means the checkpoint is unusable)
                bad[step] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
                say(f"checkpoint {path} is unreadable ({bad[step]}); trying the one before it")
                continue
            if bad:
                self._quarantine(bad)
            self.last_log = out.meta.get("log")
            self.resumed_changes = config_diff(config, self.config, mutable=())
            say(f"resuming from step {step} ({path})")
            if self.resumed_changes:
                say(f"with changed {describe_diff(config, self.config, self.resumed_changes)}")
            return Restored(out.state, step)
        if bad:
            why = "; ".join(f"step {s}: {why}" for s, why in bad.items())
            raise RuntimeError(f"no readable checkpoint in {self.directory}: {why}. Move it away to start afresh.")
        return None

    def _quarantine(self, steps) -> None:
        """Renames unusable step directories to `<step>.corrupt[.n]` (never deleted) so the step can be saved again."""
        for step in steps if jax.process_index() == 0 else ():
            src = os.path.join(self.directory, str(step))
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
        """At every step boundary (every process): saves every `every` steps, when `force` (the last step) or on
        preemption; then on preemption (unless `force`) waits and raises Preempted."""
        if log_row is not None:
            self.last_log = dict(log_row)
        stop, latest = preemption_requested(), self._manager.latest_step()
        saved = (force or stop or (self.every > 0 and step % self.every == 0)) and (latest is None or step > latest)
        if saved:
            self.save(step, state, loss=loss, data_iter=data_iter)
        if stop and not force:
            self.wait()
            _sigterm.clear()
            raise Preempted(self._manager.latest_step(), self.directory)
        return saved

    def save(self, step: int, state, *, loss=None, data_iter=None) -> None:
        """Saves `state` as `step` (async); FloatingPointError for a non-finite loss or state."""
        if not bool(jax.device_get(_all_finite((loss, state)))):
            raise FloatingPointError(f"non-finite loss or state at step {step}, not saved; {self.kept_message()}")
        meta = ocp.args.JsonSave({"step": int(step), "log": self.last_log})
        items = {"state": ocp.args.StandardSave(state), "meta": meta, "config": ocp.args.JsonSave(self.config)}
        self._manager.save(step, args=ocp.args.Composite(**items, **_data(data_iter, save=True)), force=True)

    def wait(self) -> None:
        self._manager.wait_until_finished()
