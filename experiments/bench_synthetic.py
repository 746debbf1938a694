r"""Throughput of the synthetic train step, against this machine's matmul rate and a PyTorch eager step.

    python -m experiments.bench_synthetic [--sizes=default,large] [--seconds=10] [--torch=auto]
    python -m experiments.bench_synthetic --parts [--seconds=4]
    python -m experiments.bench_synthetic --prng [--seconds=4] [--rounds=7]

Per size: steps/s and examples/s of the jitted step (sampling and complementary masking on device,
`train.steps_per_call` steps per call), its matmul FLOPs (analytic), the share of this machine's float32 matmul
rate measured in the same run, and the ratio to the same step in PyTorch eager (a benchmark-only extra:
`pip install torch==2.13.0`). --parts: each piece the speed came from against its baseline (jax.random's threefry
against cl_features.prng, argmax against the max-reduce instance accuracy, the batch drawn in the loss against
`sample_fn`). --prng: the default-size step with the synthetic sampler's draws from cl_features.prng or from
jax.random (the same numbers), timed in alternation; each ratio to the first is the median (quartiles) of the
per-round ratios, of the speed and of this process's CPU time per step. Compare ratios within one run.
"""

from __future__ import annotations

import contextlib
import importlib
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from cl_features import objectives, prng
from cl_features.synthetic import task
from cl_features.train import loop, optim
from cl_features.train import mesh as mesh_lib

from . import bench_common

FLAGS = flags.FLAGS

SIZES = {"default": {}, "large": {"data.d1": 1024, "data.d": 256, "model.width": 512, "train.batch_size": 1024}}


def step_matmul_flops(c) -> float:
    """Matmul FLOPs of one step: sample Mz, two forward views, logits, their gradient, grad W."""
    b, d1, d, m = c.train.batch_size, c.data.d1, c.data.d, c.model.width
    return float(2 * b * d * d1 + 2 * (2 * b * d1 * m) + 2 * b * b * m + 2 * b * b * m + 2 * b * d1 * m)


def _timeit(fn, seconds: float, best: bool = False) -> float:
    """Seconds per call: median (or, with best, minimum) of 5 timed blocks after a warm-up call."""
    wall, _ = bench_common.interleaved({"fn": fn}, 5, {"fn": bench_common.calls_per_block(fn, seconds / 5)})
    return float(np.min(wall["fn"]) if best else np.median(wall["fn"]))


def matmul_rate(n: int, seconds: float) -> float:
    """Measured float32 FLOP/s of a jitted [n, n] @ [n, n]."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    return 2.0 * n**3 / _timeit(lambda: f(a, b).block_until_ready(), seconds, best=True)


def _init(c, mesh):
    """(graphdef, optimizer, placed TrainState): plain SGD at train.learning_rate, seed 0."""
    tx = optim.make_optimizer(name=c.train.optimizer, learning_rate=c.train.learning_rate)
    graphdef, state = loop.init_state(task.make_model(c), tx, 0)
    return graphdef, tx, loop.place_state(state, mesh)


def jax_steps_per_second(c, seconds: float, ahead: bool = True) -> float:
    mesh = mesh_lib.make_mesh(1)
    dictionary = task.make_dictionary(c)
    graphdef, tx, state = _init(c, mesh)
    if ahead:
        step = task.make_step_fn(c, "complementary_mask", dictionary, graphdef, tx, mesh)
    else:  # the loss draws its own batch (the path before sample_fn)
        loss_fn = task.make_loss_fn(c, "complementary_mask", dictionary, mesh)
        step = loop.make_step_fn(graphdef, tx, loss_fn, mesh=mesh, steps_per_call=c.train.steps_per_call)
    return c.train.steps_per_call / _timeit(bench_common.stepper(step.fn, state), seconds)


def _per_call_ms(fn, seconds: float) -> float:
    """ms per evaluation of fn(key) on fresh keys: 50 calls inside one jitted scan."""

    def many(key):
        def body(acc, i):
            out = fn(jax.random.fold_in(key, i))
            return acc + jnp.sum(out.astype(jnp.float32)), None

        return jax.lax.scan(body, jnp.float32(0), jnp.arange(50))[0]

    f = jax.jit(many)
    key = jax.random.key(0)
    return 1e3 * _timeit(lambda: f(key).block_until_ready(), seconds, best=True) / 50


def _fresh_logits(key, n: int):
    """A cheap fresh [n, n] matrix (outer product of two drawn vectors), the same input for both sides."""
    u = prng.normal(key, (2, n))
    return u[0][:, None] * u[1][None, :] + jnp.eye(n)


def _argmax_accuracy(logits):
    return jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0]))


def parts(seconds: float) -> None:
    c = bench_common.synthetic_config(**SIZES["default"])
    b, d1 = c.train.batch_size, c.data.d1
    logits = lambda k: _fresh_logits(k, b)
    bits = (lambda k: jax.random.bits(k, (b, d1), jnp.uint32), lambda k: prng.bits(k, (b, d1)))
    normals = (lambda k: jax.random.normal(k, (b, d1)), lambda k: prng.normal(k, (b, d1)))
    accuracy = (lambda k: _argmax_accuracy(logits(k)), lambda k: objectives.instance_accuracy(logits(k)))
    rows = [
        ("random bits [512, 256]", "jax.random.bits", "prng.bits", *bits),
        ("normals [512, 256]", "jax.random.normal", "prng.normal", *normals),
        ("instance accuracy [512, 512]", "argmax", "objectives.instance_accuracy", *accuracy),
    ]
    table = []
    for name, base_name, ours_name, base, ours in rows:
        t_base, t_ours = _per_call_ms(base, seconds), _per_call_ms(ours, seconds)
        table.append((name, base_name, f"{t_base:.3f}", ours_name, f"{t_ours:.3f}", f"{t_base / t_ours:.2f}x"))
    plain = jax_steps_per_second(c, seconds, ahead=False)
    ahead = jax_steps_per_second(c, seconds, ahead=True)
    table.append(
        ("train step, default size (steps/s)", "batch drawn in the loss", f"{plain:.1f}")
        + ("drawn a step ahead (sample_fn)", f"{ahead:.1f}", f"{ahead / plain:.2f}x")
    )
    print(bench_common.table(("piece", "baseline", "ms", "ours", "ms", "speed-up"), table))


class _JaxRandom:
    """cl_features.prng's functions as plain jax.random calls (the same numbers)."""

    @staticmethod
    def fold_in(key, data):
        data = jnp.asarray(data, jnp.uint32)
        if data.ndim:
            return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, data.reshape(-1)).reshape(data.shape)
        return jax.random.fold_in(key, data)

    split = staticmethod(jax.random.split)
    bits = staticmethod(lambda key, shape: jax.random.bits(key, shape, jnp.uint32))
    uniform = staticmethod(jax.random.uniform)
    normal = staticmethod(jax.random.normal)
    bernoulli = staticmethod(jax.random.bernoulli)


# variant -> the modules whose `prng` is jax.random in it (the loop's step key is jax.random's in both).
PRNG_VARIANTS = {
    "prng in the synthetic sampler": (),
    "jax.random in the synthetic sampler": (
        "cl_features.synthetic.task",
        "cl_features.data.sparse_coding",
        "cl_features.augment.vectors",
    ),
}


def prng_variants(seconds: float, rounds: int) -> None:
    c = bench_common.synthetic_config(**SIZES["default"])
    mesh = mesh_lib.make_mesh(1)
    dictionary = task.make_dictionary(c)
    calls, first = {}, {}
    for name, modules in PRNG_VARIANTS.items():
        graphdef, tx, state = _init(c, mesh)
        with contextlib.ExitStack() as stack:
            for m in modules:
                stack.enter_context(mock.patch.object(importlib.import_module(m), "prng", _JaxRandom))
            step = task.make_step_fn(c, "complementary_mask", dictionary, graphdef, tx, mesh)
            calls[name] = bench_common.stepper(step.fn, state)
            first[name] = jax.device_get(calls[name]())  # traced and compiled under the patch
    reps = {name: bench_common.calls_per_block(call, seconds) for name, call in calls.items()}
    wall, cpu_s = bench_common.interleaved(calls, rounds, reps)
    rates = {name: [c.train.steps_per_call / t for t in ts] for name, ts in wall.items()}
    cpu_ms = {name: [1e3 * t / c.train.steps_per_call for t in ts] for name, ts in cpu_s.items()}
    base = next(iter(rates))
    same = all(jax.tree.all(jax.tree.map(np.array_equal, first[base], m)) for m in first.values())
    print(
        f"default size, {rounds} interleaved rounds of ~{seconds:g} s per variant; "
        f"first call's metrics identical: {same}"
    )
    quartiles = lambda x: f"{np.median(x):.3f} ({np.quantile(x, 0.25):.3f}-{np.quantile(x, 0.75):.3f})"
    rows = [
        (
            name,
            f"{np.median(r):.1f}",
            quartiles(np.asarray(r) / np.asarray(rates[base])),
            f"{np.median(cpu_ms[name]):.2f}",
            quartiles(np.asarray(cpu_ms[name]) / np.asarray(cpu_ms[base])),
        )
        for name, r in rates.items()
    ]
    header = ("variant", "steps/s", "speed vs first", "CPU ms/step", "CPU time vs first")
    print(bench_common.table(header, rows))


def torch_steps_per_second(c, seconds: float) -> float:
    """The same step (sampling, complementary masks, thresholded ReLUs, InfoNCE, SGD) in PyTorch eager."""
    import torch

    torch.manual_seed(0)
    b, d1, d, m = c.train.batch_size, c.data.d1, c.data.d, c.model.width
    p, sigma, tau, lr = c.data.sparsity, c.data.sigma, c.objective.temperature, c.train.learning_rate
    bias_c = c.model.bias_c
    dictionary = torch.linalg.qr(torch.randn(d1, d))[0]
    w = (torch.randn(m, d1) * c.model.init_scale).requires_grad_(True)
    labels = torch.arange(b)

    def step():
        z = torch.where(torch.rand(b, d) < p, torch.where(torch.rand(b, d) < 0.5, 1.0, -1.0), 0.0)
        x = z @ dictionary.T + sigma * torch.randn(b, d1)
        mask = (torch.rand(b, d1) < 0.5).float()
        v1, v2 = 2 * mask * x, 2 * (1 - mask) * x
        thr = bias_c * sigma * w.detach().norm(dim=1)

        def h(v):
            pre = v @ w.T
            return torch.relu(pre - thr) - torch.relu(-pre - thr)

        logits = h(v1) @ h(v2).detach().T / tau
        loss = torch.nn.functional.cross_entropy(logits, labels)
        w.grad = None
        loss.backward()
        with torch.no_grad():
            w.sub_(lr * w.grad)
        return loss

    n_inner = 10
    rates = []
    for threads in sorted({1, torch.get_num_threads()}):  # best of 1 thread and the default pool
        torch.set_num_threads(threads)
        rates.append(n_inner / _timeit(lambda: [step() for _ in range(n_inner)], seconds / 2))
    return max(rates)


def main(argv):
    del argv
    if FLAGS.parts or FLAGS.prng:
        print(bench_common.platform())
        parts(FLAGS.seconds) if FLAGS.parts else prng_variants(FLAGS.seconds, FLAGS.rounds)
        return
    bench_common.check_sizes(FLAGS.sizes, SIZES)
    torch_version = bench_common.torch_version(FLAGS.torch)
    print(bench_common.platform() + (f", torch {torch_version}" if torch_version else ", torch not timed"))
    rate = max(matmul_rate(1024, FLAGS.seconds), matmul_rate(2048, FLAGS.seconds))
    print(f"measured float32 matmul rate (best of 1024^3, 2048^3): {rate / 1e9:.1f} GFLOP/s")
    rows = []
    for size in FLAGS.sizes:
        c = bench_common.synthetic_config(**SIZES[size])
        b, sps, flops = c.train.batch_size, jax_steps_per_second(c, FLAGS.seconds), step_matmul_flops(c)
        tsps = torch_steps_per_second(c, FLAGS.seconds) if torch_version else float("nan")
        rows.append(
            [size, b, c.data.d1, c.data.d, c.model.width, f"{sps:.1f}", f"{sps * b:.0f}", f"{flops / 1e9:.3f}"]
            + [f"{sps * flops / 1e9:.1f}", f"{sps * flops / rate:.0%}", f"{tsps:.1f}", f"{sps / tsps:.2f}x"]
        )
    header = "size|batch|d1|d|m|steps/s|examples/s|GFLOP/step|GFLOP/s|share of matmul|torch steps/s|jax/torch"
    print(bench_common.table(header.split("|"), rows))


if __name__ == "__main__":
    flags.DEFINE_list("sizes", ["default", "large"], "Sizes to time: default, large.")
    flags.DEFINE_float("seconds", 10.0, "Approximate timing budget per measurement.")
    flags.DEFINE_enum("torch", "auto", ["auto", "on", "off"], "Time the PyTorch eager step (auto: if importable).")
    flags.DEFINE_bool("parts", False, "Time the step's pieces against their baselines instead (see the docstring).")
    flags.DEFINE_bool("prng", False, "Time the step with cl_features.prng against jax.random (see the docstring).")
    flags.DEFINE_integer("rounds", 7, "--prng: interleaved timing rounds.")
    app.run(main)
