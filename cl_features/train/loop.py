"""One training loop for every experiment: a jitted, sharded step over a TrainState pytree.

The task supplies the model (Flax NNX), an optax transformation and
`loss_fn(model, batch, key, step) -> (loss, metrics)`; data either comes from a host iterator of batches
(images) or is sampled inside the step from the key (synthetic: `batches=None`). Each call of the compiled
function runs `steps_per_call` steps with `lax.scan` and returns their mean metrics, so the host only
dispatches once per call. The PRNG key of step s is fold_in(rng, s): the same seed gives the same numbers
whatever the number of devices or where a run was resumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from cl_features.train import mesh as mesh_lib
from cl_features.train.metrics_log import Progress

LossFn = Callable[[nnx.Module, Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


class TrainState(NamedTuple):
    step: jax.Array  # [] int32
    params: Any  # nnx.State of nnx.Param
    rest: Any  # nnx.State of everything else (BatchNorm statistics, ...)
    opt_state: Any
    rng: jax.Array  # [2] uint32 raw key data


def init_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int) -> tuple[nnx.GraphDef, TrainState]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        rng=jax.random.key_data(jax.random.key(seed)),
    )
    return graphdef, state


def merge(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    return nnx.merge(graphdef, state.params, state.rest)


@dataclasses.dataclass
class StepFn:
    """The compiled multi-step function and what it was built for; `fit` logs the learning rate (a number or an
    optax schedule of the step) and examples_per_step x steps/s to TensorBoard."""

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

    A step's batch comes from the host (host_batches: `batches` is a pytree whose leaves are [steps_per_call,
    global_batch, ...], sharded on the batch axis), from `sample_fn(key, step)` on device, or from the loss itself
    (neither: the loss gets batch=None); otherwise `batches` is None. With sample_fn the batch of step s+1 is drawn
    while step s runs and waits in the loop carry: XLA then writes it to memory once instead of recomputing the
    random draws inside each fusion that reads them (XLA:CPU does), and the draw can overlap the step's matmuls.
    This costs one unused draw per call; the draws are the same, the results equal up to float32 rounding (XLA may
    contract a multiply-add on one side and not the other). unroll: the steps of a call as straight-line code, with
    no loop in the program (XLA:CPU runs convolutions inside any while loop, even a one-trip one, about 10x
    slower); else a rolled `lax.scan`. learning_rate, examples_per_step: recorded in the StepFn for the logs.
    after_update(model, step): called on the model with the updated parameters after each optimiser step (inside
    the step), may change its non-Param variables (e.g. BYOL's EMA target); `step` is the step just taken, 0-based.
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

    on_log(step, state) adds measurements (e.g. atom recovery) to the logged row; the event file also gets the
    learning rate of the row's last step and examples_per_second since the row before (metrics_log.Progress: the
    first call and the first measurement, which compile, are left out), the progress line the rate and ETA.
    `checkpointer` (checkpoint.Checkpointer) is offered the state at every call boundary: it saves every
    `checkpointer.every` steps and at the end, and raises checkpoint.Preempted after saving on a preemption notice.
    A non-finite loss stops the run with the step number; nothing non-finite is saved, so the last checkpoint stays
    good.
    Returns (state, rows logged by this call; a resumed run only logs the steps it ran).
    """
    spc = step_fn.steps_per_call
    history = []
    step = int(jax.device_get(state.step))
    if step % spc and step < total_steps:
        raise ValueError(
            f"cannot resume at step {step} with train.steps_per_call={spc}: the step must be a multiple of it"
        )
    progress = progress or Progress("", total_steps, step, quiet=True)
    first, measured = True, False
    while step < total_steps:
        batches = stack_batches(batch_iter, spc, mesh) if batch_iter is not None else None
        state, metrics = step_fn.fn(state, batches)
        step += spc
        if first:
            jax.block_until_ready(metrics)
            progress.first_call_done(step)
            first = False
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
