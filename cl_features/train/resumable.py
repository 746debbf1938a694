"""One training run with resume: checkpoints, the metrics log and progress lines around `loop.fit`.

`train` restores the newest usable checkpoint in <run_dir>/checkpoints, cuts <run_dir>/metrics.jsonl back to its
step, trains to `total_steps` and closes everything, also when the run stops early. Without a run directory
nothing is written or restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import jax

from cl_features import workdir
from cl_features.config_checks import check
from cl_features.jsonio import read_jsonl
from cl_features.train import checkpoint, config_guard, loop
from cl_features.train.metrics_log import MetricsLog, truncate_jsonl


class Trained(NamedTuple):
    state: loop.TrainState
    history: list[dict]  # rows logged by this call ([] for a run that was already finished)
    start: int  # the step it resumed from (0: a fresh start)
    last_row: dict | None  # the newest logged row: this call's, else the one saved with the checkpoint
    initial_row: dict  # with log_initial: on_log(0, initial state), logged as step 0 (read back on resume)
    seconds: float  # wall time of the training steps


def check_fields(c) -> None:
    """train.steps_per_call, train.log_every, train.steps (None where train.epochs exists), checkpoint.*."""
    spc = c.train.steps_per_call
    check(c, "train.steps_per_call", lambda v: v >= 1, "an int >= 1")
    multiple = f"a positive multiple of train.steps_per_call ({spc})"
    check(c, "train.log_every", lambda v: v >= 1 and v % spc == 0, multiple)
    from_epochs = "epochs" in c.train
    steps_ok = lambda v: (v is None and from_epochs) or (v >= 1 and v % spc == 0)
    check(c, "train.steps", steps_ok, multiple + (" or None (from train.epochs)" if from_epochs else ""))
    every = f"an int >= 0 and a multiple of train.steps_per_call ({spc})"
    check(c, "checkpoint.every", lambda v: v >= 0 and v % spc == 0, every)
    check(c, "checkpoint.max_to_keep", lambda v: v >= 1, "an int >= 1")


def _check_steps(start: int, total_steps: int, directory: str) -> None:
    if start > total_steps:
        raise ValueError(
            f"the newest checkpoint in {directory} is at step {start}, past the run's {total_steps} steps: raise "
            "train.steps or use another workdir"
        )


def check_resume(
    run_dir: str | None, config: dict, *, mutable_fields: Iterable[str], total_steps=None
) -> tuple[int, dict] | None:
    """Raises what `train` would on resuming <run_dir> with `config` (ConfigMismatch, or ValueError for a checkpoint
    past `total_steps`), reading only configs, writing nothing. Returns (step, saved config) for `train(checked=)`,
    None without a checkpoint."""
    directory = workdir.absolute(os.path.join(run_dir, "checkpoints")) if run_dir else None
    found = checkpoint.saved_config(directory) if directory else None
    if found is not None:
        step, saved = found
        current = json.loads(json.dumps(config))
        config_guard.check_config(saved, current, tuple(mutable_fields), os.path.join(directory, str(step)))
        if total_steps is not None:
            _check_steps(step, total_steps, directory)
    return found


def train(
    run_dir: str | None,
    config: dict,
    step_fn: loop.StepFn,
    state: loop.TrainState,
    *,
    mesh,
    total_steps: int,
    mutable_fields: Iterable[str],
    batch_iter: Iterator | None = None,
    on_log: Callable[[int, loop.TrainState], dict] | None = None,
    log_initial: bool = False,
    name: str = "train",
    verbose: bool = True,
    tensorboard: bool = True,
    part: tuple[int, int] = (0, 1),
    checked: tuple[int, dict] | None = None,
) -> Trained:
    """Trains `state` with `step_fn` to `total_steps`, resuming from <run_dir>/checkpoints.

    config: the run's config as a dict (saved; compared on resume except `mutable_fields`); its train.log_every,
    train.schedule and checkpoint.* are read here. batch_iter: host batches (position checkpointed). part: (k, K),
    see loop.Progress. checked: `check_resume`'s result. Raises checkpoint.Preempted after saving on SIGTERM,
    config_guard.ConfigMismatch on a changed config.
    """
    metrics_path = os.path.join(run_dir, "metrics.jsonl") if run_dir else None
    start, initial, ckpt = 0, {}, None
    with contextlib.ExitStack() as stack:  # closes the log, then the checkpointer, also on the way out of a failure
        if run_dir:
            ck = config["checkpoint"]
            directory, keep = os.path.join(run_dir, "checkpoints"), ck["max_to_keep"]
            ckpt = checkpoint.Checkpointer(
                directory, config=config, every=ck["every"], max_to_keep=keep, mutable_fields=mutable_fields
            )
            stack.enter_context(ckpt)
            restored = ckpt.restore(state, data_iter=batch_iter, saved=checked)
            if restored is not None:
                state, start = restored.state, restored.step
                schedule = config["train"].get("schedule", "constant")
                if schedule != "constant" and {"train.steps", "train.epochs"} & set(ckpt.resumed_changes):
                    checkpoint.say(
                        f"train.schedule={schedule} depends on the run's length: from step {start} on the "
                        f"learning rate follows the schedule for {total_steps} steps"
                    )
            _check_steps(start, total_steps, ckpt.directory)
            if jax.process_index() == 0:
                truncate_jsonl(metrics_path, start)
        log = stack.enter_context(MetricsLog(metrics_path, tensorboard=tensorboard))
        if log_initial and start == 0:
            initial = on_log(0, state)
            log.write(0, initial)
            if verbose and jax.process_index() == 0:
                print(f"[{name}] step 0 (initial) " + "  ".join(f"{k} {v:.4f}" for k, v in initial.items()), flush=True)
        elif log_initial and metrics_path and workdir.path(metrics_path).exists():
            rows = [r for r in read_jsonl(metrics_path) if r["step"] == 0]
            initial = {k: v for k, v in rows[0].items() if k != "step"} if rows else {}
        t0 = time.perf_counter()
        state, history = loop.fit(
            step_fn,
            state,
            mesh=mesh,
            total_steps=total_steps,
            log_every=config["train"]["log_every"],
            batch_iter=batch_iter,
            on_log=on_log,
            metrics_log=log,
            progress=loop.Progress(name, total_steps, start, part=part) if verbose else None,
            checkpointer=ckpt,
        )
        seconds = time.perf_counter() - t0
    last = history[-1] if history else (ckpt.last_log if ckpt is not None else None)
    return Trained(state, history, start, last, initial, seconds)
