"""One compiled group of synthetic runs: the synthetic driver's step, vmapped over runs, sharded over devices.

Each run is the synthetic driver's own task (`cl_features.synthetic.task`) built from a config whose TRACED fields
(`grid.TRACED`) are that run's entries of arrays [runs]: dictionary, network, sampling, views, loss and update are
the driver's, vmapped, so one run of a group computes what the same run alone computes, up to float32 rounding.
The run axis is sharded over the devices (mesh axis "runs"; the driver's batch axis "data" has size 1 there):
runs never exchange data, while sharding each run's batch would all-gather its features and all-reduce its
gradient every step. `side_by_side` runs per device are vmapped together and the group's other runs follow in turn
inside the same program (lax.map), which bounds memory and, where the step is compute bound, avoids batched
matmuls that run slower than single ones (XLA:CPU at the default size). A run whose loss or weights become
non-finite keeps its last finite state and records the step (`diverged_at`), so one diverging run does not end
its group.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_features.measure import recovery
from cl_features.synthetic import task
from cl_features.train import loop
from cl_features.train import mesh as mesh_lib

RUN_AXIS = "runs"


class Batch(NamedTuple):
    """The state of a group: `step` is shared, every other leaf has a leading run axis [runs, ...]."""

    step: jax.Array  # [] int32
    runs: loop.TrainState
    last: dict  # the newest finite metrics of each run (means over a call), each [runs]
    diverged_at: jax.Array  # [runs] int32: the step at which the run stopped on a non-finite value (0: never)


def make_mesh(num_devices: int | None) -> Mesh:
    """The devices of `mesh_lib.make_mesh` as a (runs, data=1) mesh."""
    devices = mesh_lib.make_mesh(num_devices).devices
    return Mesh(devices.reshape(-1, 1), (RUN_AXIS, mesh_lib.DATA_AXIS))


def traced_config(c: dict, values: dict) -> ml_collections.ConfigDict:
    """A config from dict `c` with the dotted fields of `values` set to (traced) arrays."""
    flat = traverse_util.flatten_dict(c, sep=".")
    return ml_collections.ConfigDict(traverse_util.unflatten_dict({**flat, **values}, sep="."))


def stack_values(traced: list[dict]) -> dict:
    """Per-run values -> {field: [runs] array} (int32 seeds, float32 otherwise)."""
    return {f: jnp.asarray([r[f] for r in traced], jnp.int32 if f == "seed" else jnp.float32) for f in traced[0]}


def padded_runs(count: int, devices: int, side_by_side: int = 0) -> int:
    """The run count padded to devices x (runs side by side per device) x (chunks after one another)."""
    per_device = -(-count // devices)
    k = min(side_by_side or per_device, per_device)
    return devices * -(-per_device // k) * k


class Program(NamedTuple):
    graphdef: object
    state: Batch
    step_fn: loop.StepFn
    dictionaries: jax.Array  # [runs, d1, d]
    log: object  # jit(batch) -> {"recovered_fraction", "span_share"}: [runs] each


def build(c: ml_collections.ConfigDict, arm: str, traced: list[dict], mesh: Mesh, side_by_side: int = 0) -> Program:
    """The group's initial state and compiled multi-step function. c: the group's resolved config; traced: each
    run's TRACED values; side_by_side: runs vmapped together per device (0: all), the rest in turn (lax.map)."""
    base, devices = c.to_dict(), mesh.shape[RUN_AXIS]
    n = padded_runs(len(traced), devices, side_by_side)
    k = min(side_by_side or n // devices, n // devices)
    chunks = n // (devices * k)
    traced = traced + [traced[-1]] * (n - len(traced))
    runs, shared = NamedSharding(mesh, P(RUN_AXIS)), NamedSharding(mesh, P())
    values = jax.device_put(stack_values(traced), runs)
    # The dictionaries outside the program: each is then the one the run alone draws, bit for bit.
    dictionaries = jax.device_put(jnp.stack([task.make_dictionary(traced_config(base, t)) for t in traced]), runs)
    vmap = lambda f: jax.vmap(f, spmd_axis_name=RUN_AXIS)  # noqa: E731
    graphdefs = []

    def init_one(v):
        graphdef, _, state = task.make_train_state(traced_config(base, v))
        graphdefs.append(graphdef)
        return state

    runs_state = jax.jit(vmap(init_one), out_shardings=runs)(values)
    graphdef = graphdefs[0]

    def call_one(v, dictionary, run):
        rc = traced_config(base, v)
        return task.make_step_fn(rc, arm, dictionary, graphdef, task.make_optimizer(rc), mesh).fn(run, None)

    def over_runs(f, *xs):
        """vmap(f) over the run axis, as `chunks` vmapped blocks of devices x k runs one after another."""
        if chunks == 1:
            return vmap(f)(*xs)
        shape = lambda x: x.shape[1:]  # noqa: E731
        to = lambda x: x.reshape(devices, chunks, k, *shape(x)).swapaxes(0, 1).reshape(chunks, -1, *shape(x))  # noqa: E731
        back = lambda x: x.reshape(chunks, devices, k, *x.shape[2:]).swapaxes(0, 1).reshape(n, *x.shape[2:])  # noqa: E731
        out = jax.lax.map(lambda a: vmap(f)(*a), jax.tree_util.tree_map(to, xs))
        return jax.tree_util.tree_map(back, out)

    def many(values, dictionaries, b: Batch):
        end = b.step + c.train.steps_per_call

        def steps_one(v, dictionary, run, last, diverged_at):
            new, metrics = call_one(v, dictionary, run)
            finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves((new.params, metrics["loss"]))]
            ok = jnp.all(jnp.stack(finite)) & (diverged_at == 0)
            keep = lambda new_value, old: jnp.where(ok, new_value, old)  # noqa: E731
            run, last = jax.tree_util.tree_map(keep, new, run), jax.tree_util.tree_map(keep, metrics, last)
            return run, last, jnp.where(ok | (diverged_at > 0), diverged_at, end)

        run, last, diverged = over_runs(steps_one, values, dictionaries, b.runs, b.last, b.diverged_at)
        live = diverged == 0
        mean = {name: jnp.sum(jnp.where(live, v, 0.0)) / jnp.sum(live) for name, v in last.items()}
        return Batch(end, run, last, diverged), mean

    shardings = Batch(shared, runs, runs, runs)
    program = jax.jit(many, in_shardings=(runs, runs, shardings), out_shardings=(shardings, shared), donate_argnums=2)
    first = jax.tree_util.tree_map(lambda x: x[0], (values, dictionaries, runs_state))
    last = {k: jnp.zeros((n,), m.dtype) for k, m in jax.eval_shape(call_one, *first)[1].items()}
    state = jax.device_put(Batch(jnp.zeros((), jnp.int32), runs_state, last, jnp.zeros((n,), jnp.int32)), shardings)

    def log_one(params, rest, dictionary):
        w = task.encoder(loop.merge(graphdef, loop.TrainState(None, params, rest, None, None))).w[...]
        rec = recovery.recovery(w, dictionary, c.measure.threshold)
        return {"recovered_fraction": rec["recovered_fraction"], "span_share": rec["span_share_mean"]}

    log = jax.jit(lambda b: jax.vmap(log_one)(b.runs.params, b.runs.rest, dictionaries))
    step_fn = loop.StepFn(fn=lambda b, _: program(values, dictionaries, b), steps_per_call=c.train.steps_per_call)
    return Program(graphdef, state, step_fn, dictionaries, log)


def run_models(program: Program, state: Batch, count: int) -> list:
    """The trained model of each of the first `count` runs, as host-side copies."""
    host = jax.device_get(state.runs)
    return [
        loop.merge(program.graphdef, jax.tree_util.tree_map(lambda x, i=i: jnp.asarray(np.asarray(x)[i]), host))
        for i in range(count)
    ]
