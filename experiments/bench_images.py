r"""Throughput of the ResNet-18 CIFAR SimCLR step on this machine, against the same step in PyTorch (CPU).

    python -m experiments.bench_images [--batch=32] [--steps=5] [--torch=auto] [--encoder=resnet18|wrn34x5]

Times one call of each step per round, in alternation, so that load from other jobs hits them alike:
  * jax step: the whole SimCLR train step of cifar10_simclr_resnet18.py (on-device crop + flip + colour jitter +
    grayscale of both views, ResNet-18 with the CIFAR stem, head 512-512-128, NT-Xent, online linear probe,
    SGD-momentum update), through `loop.make_step_fn`;
  * jax model step: pre-made float views in, encoder + head + NT-Xent + update: the step the PyTorch one mirrors;
  * torch model step: the same model written by hand in PyTorch (torchvision does not import beside our torch),
    eager, float32, torch.optim.SGD(momentum=0.9); a benchmark-only extra: `pip install torch==2.13.0`;
  * jax augmentation: `augment.image_ops.two_views` alone (both views of each image).
FLOPs per image: XLA's cost analysis of the compiled programs divided by the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from cl_features import objectives
from cl_features.augment import image_ops, image_sets
from cl_features.image_training import network, recipe, trainer
from cl_features.train import loop
from cl_features.train import mesh as mesh_lib

from . import bench_common
from .configs import cifar10_simclr_resnet18, cifar10_simclr_wrn34x5

CONFIGS = {"resnet18": cifar10_simclr_resnet18, "wrn34x5": cifar10_simclr_wrn34x5}

FLAGS = flags.FLAGS


def make_config(batch: int, encoder: str = "resnet18"):
    c = CONFIGS[encoder].get_config()
    c.model.dtype = "float32"  # CPU
    c.train.optimizer, c.train.schedule, c.train.warmup_epochs = "momentum", "constant", 0.0
    c.train.batch_size, c.train.steps_per_call, c.train.log_every = batch, 1, 1
    c.eval.every_steps = 0
    return trainer.validate(c)


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def _step(c, tx, loss_fn, batch, mesh):
    """(blocking callable of one step on `batch`, XLA FLOPs per call) of the model of `c`."""
    graphdef, state = loop.init_state(network.make_model(c, 10), tx, 0)
    unroll = network.unroll(c)
    step = loop.make_step_fn(graphdef, tx, loss_fn, mesh=mesh, steps_per_call=1, host_batches=True, unroll=unroll)
    batches = loop.stack_batches(iter([batch]), 1, mesh)
    state = loop.place_state(state, mesh)
    return bench_common.stepper(step.fn, state, batches), _flops(step.fn.lower(state, batches).compile())


def jax_steps(c) -> dict:
    """{name: (blocking callable, XLA FLOPs per call)} of the full step, the model-only step and the augmentation."""
    mesh = mesh_lib.make_mesh(1)
    b = c.train.batch_size
    rng = np.random.default_rng(0)
    uint8 = rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, (b,)).astype(np.int32)
    views = rng.normal(size=(2 * b, 32, 32, 3)).astype(np.float32)
    tx = recipe.make_optimizer(c, recipe.make_schedule(c, num_train=50_000))

    def model_loss(m, batch, key, step_index):  # pre-made views: encoder + head + NT-Xent (what torch does)
        z = m.head(m.encoder(batch["views"]))
        return objectives.nt_xent(z[:b], z[b:], c.objective.temperature), {}

    plain = trainer.validate(c)
    plain.objective.online_probe = False
    cfg = image_sets.resolve(c.augment)
    two = jax.jit(lambda key, x: image_ops.two_views(key, x, cfg, 32))
    x = jnp.asarray(uint8)
    keys, counter = jax.random.split(jax.random.key(1), 1000), iter(range(10**9))
    return {
        "full": _step(c, tx, network.make_loss_fn(c, mesh), {"image": uint8, "label": labels}, mesh),
        "model": _step(plain, tx, model_loss, {"views": views}, mesh),
        "aug": (
            lambda: jax.block_until_ready(two(keys[next(counter) % 1000], x)),
            _flops(two.lower(jax.random.key(0), x).compile()),
        ),
    }


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
    torch_version = bench_common.torch_version(FLAGS.torch if FLAGS.encoder == "resnet18" else "off", threads=True)
    c = make_config(FLAGS.batch, FLAGS.encoder)
    name = {"resnet18": "ResNet-18", "wrn34x5": "WRN-34-5"}[FLAGS.encoder]
    b = c.train.batch_size
    print(
        f"{bench_common.platform()}; "
        + (f"torch {torch_version}" if torch_version else "torch not timed")
        + f"; batch {b} images = {2 * b} views of 32x32, median of {FLAGS.steps} interleaved rounds"
    )
    r = jax_steps(c)
    fns = {"full": r["full"][0], "model": r["model"][0]} | ({"torch": torch_step(c)} if torch_version else {})
    times, _ = bench_common.interleaved(fns, FLAGS.steps)
    times["aug"] = bench_common.interleaved({"aug": r["aug"][0]}, 10 * FLAGS.steps)[0]["aug"]
    nan = float("nan")
    med = {k: float(np.median(v)) for k, v in times.items()}
    rows = [
        (f"jax SimCLR step (augment + {name} + head + NT-Xent + probe + update)", med["full"], r["full"][1]),
        (f"jax model step (views in: {name} + head + NT-Xent + update)", med["model"], r["model"][1]),
        ("torch model step (same, eager)", med.get("torch", nan), nan),
        ("jax augmentation alone (two views, crop_flip_color)", med["aug"], r["aug"][1]),
    ]
    cell = lambda v, fmt: "-" if not np.isfinite(v) else format(v, fmt)
    cells = [
        (what, cell(t * 1e3, ".0f"), cell(b / t, ".1f"), cell(flops / b / 1e9, ".4f"), cell(flops / t / 1e9, ".1f"))
        for what, t, flops in rows
    ]
    print(bench_common.table(("what", "ms/step", "images/s", "XLA GFLOP/image", "GFLOP/s"), cells))
    if torch_version:
        ratios = np.asarray(times["torch"]) / np.asarray(times["model"])
        full = np.asarray(times["torch"]) / np.asarray(times["full"])
        print(
            f"jax / torch images/s, model step: median {np.median(ratios):.2f}x (rounds: "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + f"); jax full step incl. augmentation / torch model step: {np.median(full):.2f}x"
        )


if __name__ == "__main__":
    flags.DEFINE_integer("batch", 32, "Images per step (each gives two views).")
    flags.DEFINE_integer("steps", 5, "Timed rounds (one call of each step per round, after one warm-up call).")
    flags.DEFINE_enum("torch", "auto", ["auto", "on", "off"], "Time the PyTorch step (auto: if importable).")
    flags.DEFINE_enum("encoder", "resnet18", list(CONFIGS), "Whose SimCLR step (the PyTorch mirror: resnet18 only).")
    app.run(main)
