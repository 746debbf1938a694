r"""Throughput of the synthetic train step, against this machine's matmul rate and a PyTorch eager step.

    python -m experiments.bench_synthetic [--sizes=default,large] [--seconds=10] [--torch=auto]
    python -m experiments.bench_synthetic --parts [--seconds=4]
    python -m experiments.bench_synthetic --prng [--seconds=4] [--rounds=7]

For each size it reports steps/s and examples/s of the jitted step (data sampling and complementary masking on
device included, `train.steps_per_call` steps per compiled call), the step's matmul FLOPs (counted analytically),
this machine's measured float32 matmul FLOP/s in the same run, the step's share of it, and the same step written
in plain PyTorch (CPU, eager) as a ratio. PyTorch is a benchmark-only extra: `pip install torch==2.13.0`.
Timings on shared machines are noisy: compare ratios within one run.

--parts times the pieces the step's speed came from, each against its baseline in the same run: jax.random's
threefry draws against cl_features.prng's (same numbers), the instance accuracy as argmax against the max-reduce
in cl_features.objectives, and the default-size step drawing its batch inside the loss against drawing the next
batch during the current step (`sample_fn`).

--prng times the default-size step with the synthetic sampler's random numbers (sparse_coding.sample and the
vector augmentations' draws) from cl_features.prng or from jax.random (the same numbers). The variants are timed
in alternation, one block of calls of each per round; each ratio to the first is the median (and quartiles) of
the per-round ratios, for the wall-clock speed and for this process's CPU time per step (all threads; less moved
by other jobs on a shared machine).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from cl_features.synthetic import arms, task
from cl_features.train import loop, optim
from cl_features.train import mesh as mesh_lib

from .configs import synthetic as synthetic_config

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["default", "large"], "Sizes to time: default, large.")
flags.DEFINE_float("seconds", 10.0, "Approximate timing budget per measurement.")
flags.DEFINE_enum("torch", "auto", ["auto", "on", "off"], "Time the PyTorch eager step (auto: if importable).")
flags.DEFINE_bool("parts", False, "Time the step's pieces against their baselines instead (see the docstring).")
flags.DEFINE_bool("prng", False, "Time the step with cl_features.prng against jax.random (see the docstring).")
flags.DEFINE_integer("rounds", 7, "--prng: interleaved timing rounds.")

SIZES = {"default": {}, "large": {"d1": 1024, "d": 256, "width": 512, "batch_size": 1024}}


def make_config(size: str):
    c = synthetic_config.get_config()
    over = SIZES[size]
    c.data.d1 = over.get("d1", c.data.d1)
    c.data.d = over.get("d", c.data.d)
    c.model.width = over.get("width", c.model.width)
    c.train.batch_size = over.get("batch_size", c.train.batch_size)
    return arms.validate(c)


def step_matmul_flops(c) -> float:
    """Matmul FLOPs of one step: sample Mz, two forward views, logits, their gradient, grad W."""
    b, d1, d, m = c.train.batch_size, c.data.d1, c.data.d, c.model.width
    sample = 2 * b * d * d1
    forward = 2 * (2 * b * d1 * m)
    logits = 2 * b * b * m
    grad_h = 2 * b * b * m
    grad_w = 2 * b * d1 * m
    return float(sample + forward + logits + grad_h + grad_w)


def _timeit(fn, seconds: float, best: bool = False) -> float:
    """Seconds per call: median (or, with best, minimum) of 5 timed blocks after a warm-up call."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, int(seconds / 5 / one))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return float(np.min(times) if best else np.median(times))


def matmul_rate(n: int, seconds: float) -> float:
    """Measured float32 FLOP/s of a jitted [n, n] @ [n, n]."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    return 2.0 * n**3 / _timeit(lambda: f(a, b).block_until_ready(), seconds, best=True)


def jax_steps_per_second(c, seconds: float, ahead: bool = True) -> float:
    mesh = mesh_lib.make_mesh(1)
    dictionary = task.make_dictionary(c)
    model = task.make_model(c)
    tx = optim.make_optimizer(name=c.train.optimizer, learning_rate=c.train.learning_rate)
    graphdef, state = loop.init_state(model, tx, 0)
    state = loop.place_state(state, mesh)
    if ahead:
        step = task.make_step_fn(c, "complementary_mask", dictionary, graphdef, tx, mesh)
    else:  # the loss draws its own batch (the path before sample_fn)
        step = loop.make_step_fn(
            graphdef,
            tx,
            task.make_loss_fn(c, "complementary_mask", dictionary, mesh),
            mesh=mesh,
            steps_per_call=c.train.steps_per_call,
        )
    holder = [state]

    def call():
        holder[0], metrics = step.fn(holder[0], None)
        jax.block_until_ready(metrics)

    return c.train.steps_per_call / _timeit(call, seconds)


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
    from cl_features import prng

    u = prng.normal(key, (2, n))
    return u[0][:, None] * u[1][None, :] + jnp.eye(n)


def _argmax_accuracy(logits):
    return jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0]))


def parts(seconds: float) -> None:
    from cl_features import objectives, prng

    c = make_config("default")
    b, d1 = c.train.batch_size, c.data.d1
    rows = [
        (
            "random bits [512, 256]",
            "jax.random.bits",
            "prng.bits",
            lambda k: jax.random.bits(k, (b, d1), jnp.uint32),
            lambda k: prng.bits(k, (b, d1)),
        ),
        (
            "normals [512, 256]",
            "jax.random.normal",
            "prng.normal",
            lambda k: jax.random.normal(k, (b, d1)),
            lambda k: prng.normal(k, (b, d1)),
        ),
        (
            "instance accuracy [512, 512]",
            "argmax",
            "objectives.instance_accuracy",
            lambda k: _argmax_accuracy(_fresh_logits(k, b)),
            lambda k: objectives.instance_accuracy(_fresh_logits(k, b)),
        ),
    ]
    print("| piece | baseline | ms | ours | ms | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, base_name, ours_name, base, ours in rows:
        t_base, t_ours = _per_call_ms(base, seconds), _per_call_ms(ours, seconds)
        print(f"| {name} | {base_name} | {t_base:.3f} | {ours_name} | {t_ours:.3f} | {t_base / t_ours:.2f}x |")
    plain = jax_steps_per_second(c, seconds, ahead=False)
    ahead = jax_steps_per_second(c, seconds, ahead=True)
    print(
        f"| train step, default size (steps/s) | batch drawn in the loss | {plain:.1f} | drawn a step ahead "
        f"(sample_fn) | {ahead:.1f} | {ahead / plain:.2f}x |"
    )


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
    import contextlib
    import importlib
    from unittest import mock

    c = make_config("default")
    mesh = mesh_lib.make_mesh(1)
    dictionary = task.make_dictionary(c)
    tx = optim.make_optimizer(name=c.train.optimizer, learning_rate=c.train.learning_rate)
    calls, first = {}, {}
    for name, modules in PRNG_VARIANTS.items():
        graphdef, state = loop.init_state(task.make_model(c), tx, 0)
        holder = [loop.place_state(state, mesh)]
        with contextlib.ExitStack() as stack:
            for m in modules:
                stack.enter_context(mock.patch.object(importlib.import_module(m), "prng", _JaxRandom))
            step = task.make_step_fn(c, "complementary_mask", dictionary, graphdef, tx, mesh)
            holder[0], metrics = step.fn(holder[0], None)  # traced and compiled under the patch
            first[name] = jax.device_get(metrics)

        def call(step=step, holder=holder):
            holder[0], metrics = step.fn(holder[0], None)
            jax.block_until_ready(metrics)

        calls[name] = call
    one = {}
    for name, call in calls.items():
        call()
        t0 = time.perf_counter()
        call()
        one[name] = max(time.perf_counter() - t0, 1e-6)
    reps = {name: max(1, int(seconds / t)) for name, t in one.items()}
    rates = {name: [] for name in calls}
    cpu_ms = {name: [] for name in calls}  # this process's CPU time (all threads) per step: less load-dependent
    for _ in range(rounds):
        for name, call in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(reps[name]):
                call()
            steps = reps[name] * c.train.steps_per_call
            rates[name].append(steps / (time.perf_counter() - t0))
            cpu_ms[name].append(1e3 * (time.process_time() - c0) / steps)
    base = next(iter(rates))
    same = all(jax.tree.all(jax.tree.map(np.array_equal, first[base], m)) for m in first.values())
    print(
        f"default size, {rounds} interleaved rounds of ~{seconds:g} s per variant; "
        f"first call's metrics identical: {same}"
    )
    print("| variant | steps/s | speed vs first | CPU ms/step | CPU time vs first |")
    print("|---|---|---|---|---|")
    for name, r in rates.items():
        speed = np.asarray(r) / np.asarray(rates[base])
        cpu = np.asarray(cpu_ms[name]) / np.asarray(cpu_ms[base])
        print(
            f"| {name} | {np.median(r):.1f} | {np.median(speed):.3f} ({np.quantile(speed, 0.25):.3f}-"
            f"{np.quantile(speed, 0.75):.3f}) | {np.median(cpu_ms[name]):.2f} | {np.median(cpu):.3f} "
            f"({np.quantile(cpu, 0.25):.3f}-{np.quantile(cpu, 0.75):.3f}) |"
        )


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
        print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}")
        parts(FLAGS.seconds) if FLAGS.parts else prng_variants(FLAGS.seconds, FLAGS.rounds)
        return
    use_torch = FLAGS.torch
    if use_torch != "off":
        try:
            import torch

            torch_version = torch.__version__
        except ImportError:
            if use_torch == "on":
                raise SystemExit("error: --torch=on but torch is not installed (pip install torch==2.13.0)") from None
            use_torch, torch_version = "off", None
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}"
        + (f", torch {torch_version}" if use_torch != "off" else ", torch not timed")
    )
    rate = max(matmul_rate(1024, FLAGS.seconds), matmul_rate(2048, FLAGS.seconds))
    print(f"measured float32 matmul rate (best of 1024^3, 2048^3): {rate / 1e9:.1f} GFLOP/s")
    header = (
        "size",
        "batch",
        "d1",
        "d",
        "m",
        "steps/s",
        "examples/s",
        "GFLOP/step",
        "GFLOP/s",
        "share of matmul",
        "torch steps/s",
        "jax/torch",
    )
    rows = []
    for size in FLAGS.sizes:
        if size not in SIZES:
            raise SystemExit(f"error: --sizes entries must be in {sorted(SIZES)}, got {size!r}")
        c = make_config(size)
        sps = jax_steps_per_second(c, FLAGS.seconds)
        flops = step_matmul_flops(c)
        tsps = torch_steps_per_second(c, FLAGS.seconds) if use_torch != "off" else float("nan")
        rows.append(
            (
                size,
                c.train.batch_size,
                c.data.d1,
                c.data.d,
                c.model.width,
                f"{sps:.1f}",
                f"{sps * c.train.batch_size:.0f}",
                f"{flops / 1e9:.3f}",
                f"{sps * flops / 1e9:.1f}",
                f"{sps * flops / rate:.0%}",
                f"{tsps:.1f}",
                f"{sps / tsps:.2f}x",
            )
        )
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    app.run(main)
