"""One training loop for every experiment: a jitted, sharded multi-step function over a TrainState pytree.

The task supplies the model (Flax NNX), an optax transformation and `loss_fn(model, batch, key, step) -> (loss,
metrics)`; batches come from a host iterator or are drawn inside the step. Each call runs `steps_per_call` steps
(`lax.scan`) and returns their mean metrics. Step s uses key fold_in(rng, s): the same seed gives the same
numbers whatever the device count or where a run resumed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from cl_features.train import mesh as mesh_lib

LossFn = Callable[[nnx.Module, Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


class TrainState(NamedTuple):
    step: jax.Array  # [] int32
    params: Any  # nnx.State of nnx.Param
    rest: Any  # nnx.State of everything else (BatchNorm statistics, ...)
    opt_state: Any
    rng: jax.Array  # [2] uint32 raw key data


def init_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int) -> tuple[nnx.GraphDef, TrainState]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = jax.random.key_data(jax.random.key(seed))
    return graphdef, TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params), rng)


def merge(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    return nnx.merge(graphdef, state.params, state.rest)


@dataclasses.dataclass
class StepFn:
    """The compiled multi-step function; `fit` logs learning_rate (a number or a schedule of the step) and
    examples_per_step x steps/s to TensorBoard."""

    fn: Callable[[TrainState, Any], tuple[TrainState, dict]]
    steps_per_call: int
    learning_rate: Any = None
    examples_per_step: int = 0


def make_step_fn(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    mesh: Mesh,
    steps_per_call: int = 1,
    host_batches: bool = False,
    sample_fn: Callable[[jax.Array, jax.Array], Any] | None = None,
    unroll: bool = False,
    learning_rate: Any = None,
    examples_per_step: int = 0,
    after_update: Callable[[nnx.Module, jax.Array], None] | None = None,
) -> StepFn:
    """jit(state, batches) -> (state, mean metrics) running `steps_per_call` steps.

    A step's batch comes from the host (host_batches: leaves [steps_per_call, global_batch, ...], sharded on the
    batch axis), from `sample_fn(key, step)` on device (drawn one step ahead, kept in the loop carry, so XLA
    materialises it once), or neither (the loss gets batch=None; `batches` is None). unroll: straight-line steps,
    no while loop (XLA:CPU runs convolutions in loops ~10x slower). after_update(model, step): after each optimiser
    step, may change non-Param variables (BYOL's EMA target); `step` is the 0-based step just taken.
    """
    if sample_fn is not None and host_batches:
        raise ValueError("make_step_fn: sample_fn and host_batches exclude each other")

    def step_key(state: TrainState, step) -> jax.Array:
        return jax.random.fold_in(jax.random.wrap_key_data(state.rng), step)

    def one_step(state: TrainState, batch):
        key = step_key(state, state.step)

        def objective(params):
            # copy=True: fresh Variables at this trace level, so BatchNorm may update its statistics.
            model = nnx.merge(graphdef, params, state.rest, copy=True)
            loss, metrics = loss_fn(model, batch, key, state.step)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, rest)

        (loss, (metrics, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if after_update is not None:
            model = nnx.merge(graphdef, params, rest, copy=True)
            after_update(model, state.step)
            _, _, rest = nnx.split(model, nnx.Param, ...)
        metrics = {"loss": loss, **metrics}
        return TrainState(state.step + 1, params, rest, opt_state, state.rng), metrics

    def body(carry, batch):
        state, upcoming = carry
        if sample_fn is not None:  # this step's batch was drawn during the step before; draw the next one
            batch, upcoming = upcoming, sample_fn(step_key(state, state.step + 1), state.step + 1)
        state, row = one_step(state, batch)
        return (state, upcoming), row

    def many_steps(state: TrainState, batches):
        first = sample_fn(step_key(state, state.step), state.step) if sample_fn is not None else None
        # unroll=0: lax.scan emits no while loop at all, even for one step
        carry, metrics = jax.lax.scan(body, (state, first), batches, length=steps_per_call, unroll=0 if unroll else 1)
        return carry[0], jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0), metrics)

    repl = mesh_lib.replicated(mesh)
    batch_in = mesh_lib.batch_sharding(mesh, batch_axis=1) if host_batches else None
    fn = jax.jit(many_steps, in_shardings=(repl, batch_in), out_shardings=(repl, repl), donate_argnums=0)
    return StepFn(fn, steps_per_call, learning_rate, examples_per_step)


def place_state(state: TrainState, mesh: Mesh) -> TrainState:
    return jax.device_put(state, mesh_lib.replicated(mesh))


def stack_batches(batch_iter: Iterator, n: int, mesh: Mesh):
    """Stacks n host batches into [n, batch, ...] leaves placed on the mesh (batch axis sharded)."""
    batches = [next(batch_iter) for _ in range(n)]
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *batches)
    sharding = mesh_lib.batch_sharding(mesh, batch_axis=1)
    if jax.process_count() == 1:
        return jax.device_put(stacked, sharding)
    return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, x), stacked)


def fit(
    step_fn: StepFn,
    state: TrainState,
    *,
    mesh: Mesh,
    total_steps: int,
    log_every: int,
    batch_iter: Iterator | None = None,
    on_log: Callable[[int, TrainState], dict] | None = None,
    metrics_log=None,
    progress=None,
    checkpointer=None,
) -> tuple[TrainState, list[dict]]:
    """Runs the compiled step from `state.step` until `total_steps`, logging every `log_every` steps.

    on_log(step, state) adds measurements to the logged row; the event file also gets the row's learning rate and
    examples_per_second. `checkpointer` (checkpoint.Checkpointer) is offered the state at every call boundary. A
    non-finite loss raises FloatingPointError naming the step. Returns (state, the rows this call logged).
    """
    spc = step_fn.steps_per_call
    history = []
    step = int(jax.device_get(state.step))
    if step % spc and step < total_steps:
        raise ValueError(
            f"cannot resume at step {step} with train.steps_per_call={spc}: the step must be a multiple of it"
        )
    progress = progress or Progress("", total_steps, step, quiet=True)
    measured = False
    while step < total_steps:
        batches = stack_batches(batch_iter, spc, mesh) if batch_iter is not None else None
        state, metrics = step_fn.fn(state, batches)
        step += spc
        if progress.first is None:  # the first call, which compiles: not part of the rate
            jax.block_until_ready(metrics)
            progress.first_call_done(step)
        last = step >= total_steps
        logged = None
        if step % log_every == 0 or last:
            row = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not np.isfinite(row["loss"]):
                kept = checkpointer.kept_message() if checkpointer is not None else "no checkpoints were written"
                raise FloatingPointError(f"non-finite loss {row['loss']} at step {step}; {kept}")
            if on_log is not None:
                t = progress.clock()
                extra = on_log(step, state)
                if extra and not measured:  # the first measurement compiles: not part of the rate
                    progress.leave_out(progress.clock() - t)
                    measured = True
                row.update(extra)
            logged = {"step": step, **row}
            history.append(logged)
            timing = progress.update(step, row)
            lr = step_fn.learning_rate
            extra = {} if lr is None else {"learning_rate": float(lr(step - 1) if callable(lr) else lr)}
            if "steps_per_second" in timing and step_fn.examples_per_step:
                extra["examples_per_second"] = timing["steps_per_second"] * step_fn.examples_per_step
            if metrics_log is not None:
                metrics_log.write(step, row, tensorboard_only=extra)
        if checkpointer is not None:
            saved = checkpointer.maybe_save(
                step, state, force=last, loss=metrics["loss"], log_row=logged, data_iter=batch_iter
            )
            if saved and metrics_log is not None:  # the rows up to a checkpoint are in the file a resume cuts back
                metrics_log.flush()
    return state, history


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 2h07m; '--' for None (not known yet)."""
    if seconds is None or not math.isfinite(seconds):
        return "--"
    s = round(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Prints `[name] step s/N  loss ...  R steps/s  ETA 3m05s` lines (process 0 only; quiet: none).

    The rate counts from `first_call_done` (compilation left out). part=(k, K): part k of K equal parts of one run
    (the arms); the line adds the whole run's ETA, each later part costing this part's compilation time too.
    `update` returns {"steps_per_second": ...} since the previous update. clock: seconds (tests fake it).
    """

    def __init__(self, name, total_steps, start_step=0, *, part=(0, 1), quiet=False, clock=time.perf_counter):
        self.name, self.total, self.s0, self.part, self.quiet = name, total_steps, start_step, part, quiet
        self.clock = clock
        self.t0, self.first, self.last = clock(), None, None  # first, last: (time, step)

    def first_call_done(self, step: int) -> None:
        self.first = self.last = (self.clock(), step)

    def leave_out(self, seconds: float) -> None:
        """Time left out of the rate (the first measurement, which compiles), counted as compilation."""
        if self.first is not None:
            self.first, self.last = (self.first[0] + seconds, self.first[1]), (self.last[0] + seconds, self.last[1])

    def update(self, step: int, metrics: dict) -> dict:
        now = self.clock()
        first, last, self.last = self.first, self.last, (now, step)
        rate = (step - first[1]) / max(now - first[0], 1e-9) if first and step > first[1] else None
        eta = (self.total - step) / rate if rate else None
        shown = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items() if np.ndim(v) == 0)
        line = f"[{self.name}] step {step}/{self.total}  {shown}  {f'{rate:.1f}' if rate else '--'} steps/s"
        line += f"  ETA {duration(eta)}"
        k, parts = self.part
        if parts > 1:
            compile_s = max(first[0] - self.t0 - (first[1] - self.s0) / rate, 0.0) if rate else 0.0
            whole = eta + (parts - 1 - k) * (self.total / rate + compile_s) if rate else None
            line += f"  run ETA {duration(whole)} ({k + 1} of {parts})"
        if not self.quiet and jax.process_index() == 0:
            print(line, flush=True)
        return {"steps_per_second": (step - last[1]) / max(now - last[0], 1e-9)} if last and step > last[1] else {}
