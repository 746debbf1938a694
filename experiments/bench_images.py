r"""Throughput of the ResNet-18 CIFAR SimCLR step on this machine, against the same step in PyTorch (CPU).

    python -m experiments.bench_images [--batch=32] [--steps=5] [--torch=auto] [--encoder=resnet18|wrn34x5]

Times, in one run, one call of each step per round so that load from other jobs hits them alike (the
shared CPU is noisy: compare within a run):
  * jax step: the whole SimCLR train step of cifar10_simclr_resnet18.py (on-device crop + flip + colour jitter +
    grayscale of both views, ResNet-18 with the CIFAR stem, projection head 512-512-128, NT-Xent, online linear
    probe, SGD-momentum update), through `loop.make_step_fn`;
  * jax model step: the same without augmentation and probe (pre-made float views in, encoder + head + NT-Xent +
    momentum update), the step the PyTorch one mirrors;
  * torch model step: the same model written by hand in PyTorch (torchvision does not import beside our torch),
    eager, float32, torch.optim.SGD(momentum=0.9); no augmentation;
  * jax augmentation: `augment.image_ops.two_views` alone (both views of each image).
FLOPs per image come from XLA's cost analysis of the compiled programs (`jit(...).lower(...).compile()
.cost_analysis()['flops']`) divided by the batch; the analytic count for ResNet-18 at 32x32 is 0.56 GMAC
(1.11 GFLOP) per view forward, about 3x that per view for forward + backward. PyTorch is a benchmark-only extra:
`pip install torch==2.13.0`.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from cl_features import objectives
from cl_features.augment import image_ops, image_sets
from cl_features.image_training import network, recipe, trainer
from cl_features.train import loop
from cl_features.train import mesh as mesh_lib

from .configs import cifar10_simclr_resnet18, cifar10_simclr_wrn34x5

CONFIGS = {"resnet18": cifar10_simclr_resnet18, "wrn34x5": cifar10_simclr_wrn34x5}

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 32, "Images per step (each gives two views).")
flags.DEFINE_integer("steps", 5, "Timed rounds (one call of each step per round, after one warm-up call).")
flags.DEFINE_enum("torch", "auto", ["auto", "on", "off"], "Time the PyTorch step (auto: if importable).")
flags.DEFINE_enum("encoder", "resnet18", list(CONFIGS), "Whose SimCLR step (the PyTorch mirror: resnet18 only).")


def make_config(batch: int, encoder: str = "resnet18"):
    c = CONFIGS[encoder].get_config()
    c.model.dtype = "float32"  # CPU
    c.train.optimizer, c.train.schedule, c.train.warmup_epochs = "momentum", "constant", 0.0
    c.train.batch_size, c.train.steps_per_call, c.train.log_every = batch, 1, 1
    c.eval.every_steps = 0
    return trainer.validate(c)


def interleaved(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in alternation (one call of each per round) after one warm-up
    call each, so a change of load on a shared machine hits all of them alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def jax_steps(c) -> dict:
    """Compiled callables (one step each, blocking) and XLA FLOPs per call of the full step, the model-only step
    and the augmentation."""
    mesh = mesh_lib.make_mesh(1)
    b = c.train.batch_size
    rng = np.random.default_rng(0)
    uint8 = rng.integers(0, 256, (1, b, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, (1, b)).astype(np.int32)
    sched = recipe.make_schedule(c, num_train=50_000)
    out = {}

    # Full step: augmentation + model + probe + update, as in training.
    model = network.make_model(c, 10)
    tx = recipe.make_optimizer(c, sched)
    graphdef, state = loop.init_state(model, tx, 0)
    step = loop.make_step_fn(
        graphdef,
        tx,
        network.make_loss_fn(c, mesh),
        mesh=mesh,
        steps_per_call=1,
        host_batches=True,
        unroll=network.unroll(c),
    )
    batches = loop.stack_batches(iter([{"image": uint8[0], "label": labels[0]}]), 1, mesh)
    holder = [loop.place_state(state, mesh)]
    out["full_flops"] = _flops(step.fn.lower(holder[0], batches).compile())

    def full():
        holder[0], metrics = step.fn(holder[0], batches)
        jax.block_until_ready(metrics)

    out["full"] = full

    # Model-only step: pre-made views, encoder + head + NT-Xent + update (what the torch step does).
    def model_loss(m, batch, key, step_index):
        del key, step_index
        z = m.head(m.encoder(batch["views"]))
        return objectives.nt_xent(z[:b], z[b:], c.objective.temperature), {}

    c_plain = trainer.validate(c)
    c_plain.objective.online_probe = False
    model = network.make_model(c_plain, 10)
    graphdef, state = loop.init_state(model, tx, 0)
    plain = loop.make_step_fn(
        graphdef, tx, model_loss, mesh=mesh, steps_per_call=1, host_batches=True, unroll=network.unroll(c)
    )
    views = rng.normal(size=(2 * b, 32, 32, 3)).astype(np.float32)
    view_batches = loop.stack_batches(iter([{"views": views}]), 1, mesh)
    holder2 = [loop.place_state(state, mesh)]
    out["model_flops"] = _flops(plain.fn.lower(holder2[0], view_batches).compile())

    def model_only():
        holder2[0], metrics = plain.fn(holder2[0], view_batches)
        jax.block_until_ready(metrics)

    out["model"] = model_only

    # Augmentation alone: both views of each image.
    cfg = image_sets.resolve(c.augment)
    two = jax.jit(lambda key, x: image_ops.two_views(key, x, cfg, 32))
    x = jnp.asarray(uint8[0])
    out["aug_flops"] = _flops(two.lower(jax.random.key(0), x).compile())
    keys = jax.random.split(jax.random.key(1), 1000)
    counter = iter(range(10**9))
    out["aug"] = lambda: jax.block_until_ready(two(keys[next(counter) % 1000], x))
    return out


def torch_step(c):
    """The hand-written PyTorch ResNet-18 + head + NT-Xent + SGD-momentum step, as a callable."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = (
                nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                if stride != 1 or c_in != c_out
                else nn.Identity()
            )

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
            layers, c_in = [], 64
            for i, width in enumerate((64, 128, 256, 512)):
                for j in range(2):
                    layers.append(Block(c_in, width, 2 if (i > 0 and j == 0) else 1))
                    c_in = width
            self.blocks = nn.Sequential(*layers)

        def forward(self, x):
            return self.blocks(self.stem(x)).mean(dim=(2, 3))

    encoder = ResNet18()
    head = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    b, tau = c.train.batch_size, c.objective.temperature
    views = torch.randn(2 * b, 3, 32, 32)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])

    def step():
        z = F.normalize(head(encoder(views)), dim=1)
        sim = (z @ z.T / tau).masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
        loss = F.cross_entropy(sim, partner)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv):
    del argv
    use_torch = FLAGS.torch if FLAGS.encoder == "resnet18" else "off"
    torch_version = None
    if use_torch != "off":
        try:
            import torch

            torch_version = f"{torch.__version__} ({torch.get_num_threads()} threads)"
        except ImportError:
            if use_torch == "on":
                raise SystemExit("error: --torch=on but torch is not installed (pip install torch==2.13.0)") from None
            use_torch = "off"
    c = make_config(FLAGS.batch, FLAGS.encoder)
    name = {"resnet18": "ResNet-18", "wrn34x5": "WRN-34-5"}[FLAGS.encoder]
    b = c.train.batch_size
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}; "
        + (f"torch {torch_version}" if use_torch != "off" else "torch not timed")
        + f"; batch {b} images = {2 * b} views of 32x32, median of {FLAGS.steps} interleaved rounds"
    )
    r = jax_steps(c)
    fns = {"full": r["full"], "model": r["model"]}
    if use_torch != "off":
        fns["torch"] = torch_step(c)
    times = interleaved(fns, FLAGS.steps)
    aug = interleaved({"aug": r["aug"]}, 10 * FLAGS.steps)["aug"]
    med = {k: float(np.median(v)) for k, v in times.items()}
    t = med.get("torch", float("nan"))
    header = ("what", "ms/step", "images/s", "XLA GFLOP/image", "GFLOP/s")
    rows = [
        (f"jax SimCLR step (augment + {name} + head + NT-Xent + probe + update)", med["full"], r["full_flops"]),
        (f"jax model step (views in: {name} + head + NT-Xent + update)", med["model"], r["model_flops"]),
        ("torch model step (same, eager)", t, float("nan")),
        ("jax augmentation alone (two views, crop_flip_color)", float(np.median(aug)), r["aug_flops"]),
    ]
    cell = lambda v, fmt: "-" if not np.isfinite(v) else format(v, fmt)  # noqa: E731
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for name, seconds, flops in rows:
        print(
            f"| {name} | {cell(seconds * 1e3, '.0f')} | {cell(b / seconds, '.1f')} | "
            f"{cell(flops / b / 1e9, '.4f')} | {cell(flops / seconds / 1e9, '.1f')} |"
        )
    if use_torch != "off":
        ratios = np.asarray(times["torch"]) / np.asarray(times["model"])
        full = np.asarray(times["torch"]) / np.asarray(times["full"])
        print(
            f"jax / torch images/s, model step: median {np.median(ratios):.2f}x (rounds: "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + f"); jax full step incl. augmentation / torch model step: "
            f"{np.median(full):.2f}x"
        )


if __name__ == "__main__":
    app.run(main)
