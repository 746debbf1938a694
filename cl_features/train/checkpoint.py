"""Checkpoints of one training run: exact resume, preemption, corrupt-checkpoint fallback, config guard.

A `Checkpointer` wraps an orbax `CheckpointManager` over `directory` (by convention
`<workdir>/<run>/checkpoints`). Each saved step `<directory>/<step>/` holds the items
  state   the TrainState pytree: params, optimizer state, step, PRNG key data (ocp.args.StandardSave);
  meta    JSON {"step", "fingerprint", "log": last logged metrics row, "process_count"};
  config  JSON, the run's config; resuming checks it against the current one;
  data    only for runs that read host batches: each process's data-iterator state (grain get_state).

Saves are asynchronous (the device-to-host copy blocks, the writing does not), every `every` steps, on the
run's last step and on preemption; orbax keeps the newest `max_to_keep`. `restore` returns the newest
readable checkpoint placed with the shardings of the state it is given. A checkpoint that fails to load or
whose restored state does not match the fingerprint taken when it was saved is reported with its path,
renamed to `<step>.corrupt` (kept, never deleted) and the one before it is used. Half-written saves (orbax's
`<step>.orbax-checkpoint-tmp*` directories, left by a kill during an async save) are reported and ignored
(orbax replaces one when it saves that step again). The directory is a local or shared-filesystem path: every
process of a multi-host run must see the same one.

Preemption: SIGTERM (one process, or several without JAX's preemption service) or JAX's preemption sync point
(multi-process: `multihost_utils.reached_preemption_sync_point`, which JAX triggers on SIGTERM) makes the next
`maybe_save` save that step, wait for it, and raise `Preempted`; the caller exits 0 and the same command
resumes. A state or loss that is not finite is never saved (FloatingPointError names the step and the last
good checkpoint).
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import math
import os
import signal
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

# Fields that may change between a checkpoint and its resume: they do not change the numbers of a step.
MUTABLE_FIELDS = ("train.steps", "train.log_every", "train.steps_per_call", "train.num_devices", "checkpoint")
CORRUPT_SUFFIX = ".corrupt"
_TMP_MARK = ".orbax-checkpoint-tmp"


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


class _QuietOrbax(logging.Filter):
    """Drops orbax's INFO/DEBUG records (several lines per save) from absl's logger; warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_orbax_logs() -> None:
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
        logger.addFilter(_QuietOrbax())


def say(msg: str) -> None:
    """A report line on process 0."""
    if jax.process_index() == 0:
        print(f"[checkpoint] {msg}", flush=True)


# --- config comparison ------------------------------------------------------------------------------------


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(saved: dict, current: dict, mutable: Iterable[str] = MUTABLE_FIELDS) -> list[str]:
    """Dotted fields whose values differ (present in only one counts), except `mutable` ones and their children."""
    mutable = tuple(mutable)
    a, b = flatten(_plain_json(saved)), flatten(_plain_json(current))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))
    return [k for k in changed if not any(k == m or k.startswith(m + ".") for m in mutable)]


def describe_diff(saved: dict, current: dict, fields: list[str]) -> str:
    a, b = flatten(_plain_json(saved)), flatten(_plain_json(current))
    show = lambda v: "(absent)" if v is _MISSING else json.dumps(v)  # noqa: E731
    return "; ".join(f"{k}: {show(a.get(k, _MISSING))} -> {show(b.get(k, _MISSING))}" for k in fields)


_MISSING = object()


def _plain_json(tree: dict) -> dict:
    return json.loads(json.dumps(tree))


# --- state fingerprint ------------------------------------------------------------------------------------


def _words(x: jax.Array) -> jax.Array:
    """The bits of x as uint32 words [k]."""
    x = jnp.ravel(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = x.dtype.itemsize
    if size == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if size == 8:
        return jnp.ravel(jax.lax.bitcast_convert_type(x, jnp.uint32))
    unsigned = {2: jnp.uint16, 1: jnp.uint8}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _fingerprint(tree) -> tuple[jax.Array, jax.Array]:
    h, finite = jnp.uint32(0), jnp.bool_(True)
    for i, x in enumerate(jax.tree_util.tree_leaves(tree)):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.inexact):
            finite = finite & jnp.all(jnp.isfinite(x))
        w = _words(x)
        # Odd weights: changing any one word changes the sum mod 2^32.
        odd = jnp.arange(w.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(2 * i + 1)
        h = h * jnp.uint32(0x9E3779B1) + jnp.sum(w * (odd * jnp.uint32(0x85EBCA6B)), dtype=jnp.uint32)
    return h, finite


def fingerprint(tree) -> tuple[int, bool]:
    """(uint32 hash of every leaf's bits and position, all floating leaves finite). Call on every process."""
    h, finite = jax.device_get(_fingerprint(tree))
    return int(h), bool(finite)


# --- preemption ---------------------------------------------------------------------------------------------

_sigterm = threading.Event()
_boundary = itertools.count()  # one per step boundary, in lockstep on every process


def _jax_preemption_service() -> bool:
    """Whether JAX's preemption sync manager runs (multi-process with jax_enable_preemption_service)."""
    if jax.process_count() == 1:
        return False
    try:
        from jax._src import distributed as jax_distributed  # private: read defensively
    except ImportError:
        return False
    return getattr(jax_distributed.global_state, "preemption_sync_manager", None) is not None


def _on_sigterm(signum, frame) -> None:
    del signum, frame
    _sigterm.set()


def install_sigterm_handler() -> tuple[bool, Any]:
    """Turns SIGTERM into a request to save and stop. Returns (installed, the previous handler).

    Not installed where JAX's preemption service already listens for SIGTERM, nor outside the main thread.
    """
    if _jax_preemption_service() or threading.current_thread() is not threading.main_thread():
        return False, None
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True, previous


def preemption_requested() -> bool:
    """Whether every process should save and stop now. Call exactly once per step boundary on every process."""
    boundary = next(_boundary)
    if jax.process_count() == 1:
        return _sigterm.is_set()
    if _jax_preemption_service():
        return bool(multihost_utils.reached_preemption_sync_point(boundary))
    flags = multihost_utils.process_allgather(np.int32(_sigterm.is_set()))
    return bool(np.any(flags))


def request_preemption() -> None:
    """What SIGTERM does (for tests and for callers with their own signal source)."""
    _sigterm.set()


# --- the checkpointer ---------------------------------------------------------------------------------------


class _Manager(ocp.CheckpointManager):
    def reached_preemption(self, step: int) -> bool:
        # The Checkpointer decides with its own boundary counter; orbax calling JAX's sync point with step
        # numbers would desynchronise it.
        del step
        return False


def _has_iterator_state(it) -> bool:
    return it is not None and callable(getattr(it, "get_state", None)) and callable(getattr(it, "set_state", None))


class Checkpointer:
    """Saves and restores one run's TrainState (plus config and data-iterator state) in `directory`.

    Args:
      directory: where the step directories go (created).
      config: the run's config as a JSON-able dict; saved with every checkpoint and checked on restore.
      every: save every this many steps (0: only at the end and on preemption).
      max_to_keep: how many checkpoints orbax keeps (older ones are deleted after a newer save).
      mutable_fields: dotted config fields (or groups) that may differ on resume.
      async_save: write in the background (the save call still copies the state to host first).
    """

    def __init__(
        self,
        directory: str,
        *,
        config: dict,
        every: int = 0,
        max_to_keep: int = 2,
        mutable_fields: Iterable[str] = MUTABLE_FIELDS,
        async_save: bool = True,
    ):
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint.every must be an int >= 0, got {every!r}")
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"checkpoint.max_to_keep must be an int >= 1, got {max_to_keep!r}")
        self.directory = os.path.abspath(directory)
        self.config = _plain_json(config)
        self.every, self.max_to_keep = every, max_to_keep
        self.mutable_fields = tuple(mutable_fields)
        self.last_log: dict | None = None
        self.resumed_changes: list[str] = []  # allowed config fields that differ from the restored checkpoint's
        quiet_orbax_logs()
        self._manager = _Manager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
            ),
        )
        self._sigterm_installed, self._previous_handler = install_sigterm_handler()

    # -- inspection --

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def step_path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def kept_message(self) -> str:
        step = self.latest_step
        if step is None:
            return f"no checkpoint was saved yet in {self.directory}"
        return f"the last good checkpoint is step {step} in {self.step_path(step)}"

    # -- restore --

    def restore(self, state, data_iter=None) -> Restored | None:
        """The newest readable checkpoint, placed like `state` (its shardings); None if there is none.

        Raises ConfigMismatch (one line naming the fields) if it was saved with a config that changes the run,
        RuntimeError if checkpoints exist but none can be read (nothing is renamed then).
        """
        for tmp in sorted(glob.glob(os.path.join(self.directory, f"*{_TMP_MARK}*"))):
            say(f"ignoring half-written checkpoint {tmp}")
        self._manager.reload()
        steps = sorted(self._manager.all_steps(), reverse=True)
        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        bad = []
        for step in steps:
            path = self.step_path(step)
            try:
                saved_config = self._manager.restore(
                    step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
                ).config
            except Exception as e:  # noqa: BLE001  (any failure to read means the checkpoint is unusable)
                bad.append((step, f"{type(e).__name__}: {_first_line(e)}"))
                say(f"checkpoint {path} is unreadable ({bad[-1][1]}); trying the one before it")
                continue
            self._check_config(saved_config, step)
            if _has_iterator_state(data_iter) and not os.path.isdir(os.path.join(path, "data")):
                raise ValueError(
                    f"{path} holds no data-iterator state (saved by a run without one); resume "
                    "without a data iterator or use another workdir"
                )
            try:
                restored = self._restore_step(step, abstract, data_iter)
            except Exception as e:  # noqa: BLE001
                bad.append((step, f"{type(e).__name__}: {_first_line(e)}"))
                say(f"checkpoint {path} is corrupt ({bad[-1][1]}); trying the one before it")
                continue
            self._quarantine([s for s, _ in bad])
            self.last_log = restored.log
            self.resumed_changes = config_diff(saved_config, self.config, mutable=())
            say(f"resuming from step {step} ({path})")
            if self.resumed_changes:
                say(f"with changed {describe_diff(saved_config, self.config, self.resumed_changes)}")
            return restored
        if bad:
            raise RuntimeError(
                f"no readable checkpoint in {self.directory}: "
                + "; ".join(f"step {s}: {why}" for s, why in bad)
                + ". Move the directory away to start afresh."
            )
        return None

    def _check_config(self, saved: dict, step: int) -> None:
        fields = config_diff(saved, self.config, self.mutable_fields)
        if fields:
            raise ConfigMismatch(
                f"refusing to resume {self.step_path(step)}: the config changes the run in "
                f"{', '.join(fields)} ({describe_diff(saved, self.config, fields)}); use another workdir or "
                f"restore these values (allowed to change: {', '.join(self.mutable_fields)})"
            )

    def _restore_step(self, step: int, abstract, data_iter) -> Restored:
        items = {"state": ocp.args.StandardRestore(abstract), "meta": ocp.args.JsonRestore()}
        if _has_iterator_state(data_iter):
            import grain.checkpoint  # noqa: F401  (registers grain's orbax handler)

            items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        out = self._manager.restore(step, args=ocp.args.Composite(**items))
        meta = out.meta
        got, finite = fingerprint(out.state)
        if meta.get("step") != step or int(jax.device_get(out.state.step)) != step:
            raise ValueError(
                f"step mismatch: directory {step}, meta {meta.get('step')}, state {int(jax.device_get(out.state.step))}"
            )
        if got != meta.get("fingerprint") or not finite:
            raise ValueError(f"state fingerprint {got:#010x} != saved {meta.get('fingerprint', 0):#010x}")
        return Restored(state=out.state, step=step, log=meta.get("log"))

    def _quarantine(self, steps: list[int]) -> None:
        """Renames unusable step directories to `<step>.corrupt[.n]` so that step can be saved again."""
        if not steps:
            return
        if jax.process_index() == 0:
            for step in steps:
                src = self.step_path(step)
                dst, n = src + CORRUPT_SUFFIX, 1
                while os.path.exists(dst):
                    dst, n = f"{src}{CORRUPT_SUFFIX}.{n}", n + 1
                os.rename(src, dst)
                say(f"kept the unusable checkpoint as {dst}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint quarantine {self.directory}")
        self._manager.reload()

    # -- save --

    def maybe_save(
        self, step: int, state, *, force: bool = False, loss=None, log_row: dict | None = None, data_iter=None
    ) -> bool:
        """Called at every step boundary (every process): saves when `step` is a multiple of `every`, when
        `force` (the run's last step) or on preemption. After a preemption save it waits for the write and
        raises Preempted (unless `force`). Returns whether it saved."""
        if log_row is not None:
            self.last_log = dict(log_row)
        stop = preemption_requested()
        due = force or stop or (self.every > 0 and step % self.every == 0)
        latest = self.latest_step
        saved = False
        if due and (latest is None or step > latest):
            self.save(step, state, loss=loss, data_iter=data_iter)
            saved = True
        if stop and not force:
            self._manager.wait_until_finished()
            say(f"preemption: saved step {self.latest_step} in {self.directory}")
            _sigterm.clear()
            raise Preempted(self.latest_step if self.latest_step is not None else step, self.directory)
        return saved

    def save(self, step: int, state, *, loss=None, data_iter=None) -> None:
        """Saves `state` as `step` (async); refuses (FloatingPointError) a non-finite loss or state."""
        if loss is not None:
            value = float(jax.device_get(loss))
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss {value} at step {step}, not saved; {self.kept_message()}")
        h, finite = fingerprint(state)
        if not finite:
            raise FloatingPointError(
                f"non-finite values in the training state at step {step}, not saved; {self.kept_message()}"
            )
        meta = {"step": int(step), "fingerprint": h, "log": self.last_log, "process_count": jax.process_count()}
        items = {
            "state": ocp.args.StandardSave(state),
            "meta": ocp.args.JsonSave(meta),
            "config": ocp.args.JsonSave(self.config),
        }
        if _has_iterator_state(data_iter):
            import grain.checkpoint  # noqa: F401

            items["data"] = grain.checkpoint.CheckpointSave(data_iter)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves; restores the SIGTERM handler that was there before."""
        try:
            self._manager.wait_until_finished()
            self._manager.close()
        finally:
            if self._sigterm_installed:
                # None: the handler before was not set from Python; the default action is the closest.
                previous = signal.SIG_DFL if self._previous_handler is None else self._previous_handler
                signal.signal(signal.SIGTERM, previous)
                self._sigterm_installed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""
