r"""Scaling and checkpoint costs of the training loop, on CPU.

    python -m experiments.bench_scaling [--seconds=5] [--overhead_steps=1000] [--every=0,500,100,50]

Prints three markdown tables:
1. Steps/s of the synthetic train step (complementary masking, d=64, d1=256, width 128, global batch 512, 50 steps
   per call) on 1, 2 and 4 forced CPU devices, each in its own subprocess. The forced devices share this machine's
   cores: the ratio to one device is the price (or gain) of partitioning the step, not more compute.
2. Checkpoint save and restore time of the TrainState (weights + Adam's two moments) as the model grows: the save
   call's blocking part, the time until it is written, and a restore into a new Checkpointer.
3. The overhead of checkpointing every N steps against none, over --overhead_steps steps of the step of (1).
Timings on a shared machine are noisy: compare the ratios within one run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from . import bench_common

FLAGS = flags.FLAGS

# Forced devices share the cores: on a loaded machine a device can reach a collective long after the others.
PATIENT_COLLECTIVES = "--xla_cpu_collective_call_terminate_timeout_seconds=600 --xla_cpu_collective_timeout_seconds=600"
BASE = {
    "data.d": 64,
    "data.d1": 256,
    "model.width": 128,
    "train.batch_size": 512,
    "train.steps_per_call": 50,
    "arms": "complementary_mask",
}


def make_config(**over):
    return bench_common.synthetic_config(**{**BASE, **over})


def _setup(c, num_devices: int):
    from cl_features.synthetic import task
    from cl_features.train import mesh as mesh_lib

    mesh = mesh_lib.make_mesh(num_devices)
    mesh_lib.check_batch_size(c.train.batch_size, mesh)
    dictionary = task.make_dictionary(c)
    graphdef, tx, state = task.make_train_state(c, mesh)
    step = task.make_step_fn(c, "complementary_mask", dictionary, graphdef, tx, mesh)
    return mesh, step, state


def throughput_worker(num_devices: int, seconds: float) -> dict:
    """Steps/s of the jitted multi-step call on `num_devices` devices (after a compile call)."""
    _, step, state = _setup(make_config(), num_devices)
    call = bench_common.stepper(step.fn, state)  # one call in flight: a deep queue of collectives can starve 2 cores
    call()
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or calls < 3:
        call()
        calls += 1
    dt = time.perf_counter() - t0
    steps = calls * step.steps_per_call
    return {"devices": num_devices, "steps_per_s": steps / dt, "seconds": dt, "steps": steps}


def throughput_table(seconds: float) -> str:
    results = []
    for n in (1, 2, 4):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n} {PATIENT_COLLECTIVES}")
        cmd = [sys.executable, "-m", "experiments.bench_scaling", f"--worker_devices={n}", f"--seconds={seconds}"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"error: throughput worker on {n} devices failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = results[0]["steps_per_s"]
    rows = [
        (r["devices"], f"{r['steps_per_s']:.1f}", f"{r['steps_per_s'] * 512:.0f}", f"{r['steps_per_s'] / base:.2f}")
        for r in results
    ]
    return bench_common.table(("forced CPU devices", "steps/s", "examples/s", "ratio to 1 device"), rows, right_from=0)


def checkpoint_table(sizes: list[str], repeats: int = 3) -> str:
    import jax

    from cl_features.train import checkpoint

    rows = []
    for size in sizes:
        d1, width = (int(v) for v in size.split("x"))
        c = make_config(**{"data.d1": d1, "model.width": width, "train.optimizer": "adam"})
        _, _, state = _setup(c, 1)
        nbytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
        block, written, restore = [], [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                with checkpoint.Checkpointer(tmp, config=c.to_dict()) as ck:
                    t0 = time.perf_counter()
                    ck.save(0, state)  # state.step is 0: the saved step must match it
                    block.append(time.perf_counter() - t0)
                    ck.wait()
                    written.append(time.perf_counter() - t0)
                with checkpoint.Checkpointer(tmp, config=c.to_dict()) as ck:
                    t0 = time.perf_counter()
                    jax.block_until_ready(ck.restore(state).state)
                    restore.append(time.perf_counter() - t0)
        times = [f"{statistics.median(ts):.3f}" for ts in (block, written, restore)]
        rows.append([f"{d1} x {width}", f"{d1 * width:,}", f"{nbytes / 2**20:.1f}", *times])
    header = ("d1 x width", "parameters", "state MB", "save: blocking s", "save: written s", "restore s")
    return bench_common.table(header, rows, right_from=1)


def overhead_table(steps: int, intervals: list[int], repeats: int = 3) -> str:
    import jax

    from cl_features.train import checkpoint, loop

    # Logging every call: every run waits for each call's metrics, as a logged run does, so only the
    # checkpoints differ (without it the run with no checkpointer would queue all its calls at once).
    c = make_config(**{"train.steps": steps, "train.log_every": BASE["train.steps_per_call"]})
    mesh, step, state0 = _setup(c, 1)
    warm, _ = step.fn(jax.tree_util.tree_map(lambda x: x.copy(), state0), None)  # compile once
    jax.block_until_ready(warm)
    times = {every: float("inf") for every in intervals}
    for _ in range(repeats):  # interleaved, best of `repeats`: the machine's load drifts
        for every in intervals:
            state = jax.tree_util.tree_map(lambda x: x.copy(), state0)
            with tempfile.TemporaryDirectory() as tmp:
                ck = checkpoint.Checkpointer(tmp, config=c.to_dict(), every=every, max_to_keep=2) if every else None
                t0 = time.perf_counter()
                state, _ = loop.fit(
                    step, state, mesh=mesh, total_steps=steps, log_every=c.train.log_every, checkpointer=ck
                )
                if ck is not None:
                    ck.close()  # waits for the last write
                jax.block_until_ready(state)
                times[every] = min(times[every], time.perf_counter() - t0)
    base = times.get(0, min(times.values()))
    rows = []
    for every, t in times.items():
        saves = 0 if every == 0 else -(-steps // every)  # every N steps, the last step included
        label = "none" if every == 0 else f"{every} steps"
        rows.append((label, saves, f"{t:.2f}", f"{steps / t:.0f}", f"{100 * (t / base - 1):+.1f}%"))
    header = ("checkpoint every", "saves", "seconds", "steps/s", "overhead vs none")
    return bench_common.table(header, rows, right_from=1)


def main(argv):
    del argv
    if FLAGS.worker_devices:
        print(json.dumps(throughput_worker(FLAGS.worker_devices, FLAGS.seconds)))
        return
    import jax

    from cl_features.train import checkpoint

    checkpoint.say = lambda msg: None  # no "[checkpoint] resuming ..." lines between the tables
    print(
        f"# bench_scaling: jax {jax.__version__}, {os.cpu_count()} CPU cores, python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    print(f"# command: {' '.join(sys.orig_argv)}\n")
    print(f"Step throughput (global batch 512, d=64, d1=256, width 128, {FLAGS.seconds:g} s per point):\n")
    print(throughput_table(FLAGS.seconds) + "\n")
    print("Checkpoint save / restore (Adam state, median of 3):\n")
    print(checkpoint_table(FLAGS.ckpt_sizes) + "\n")
    print(f"Checkpoint overhead ({FLAGS.overhead_steps} steps of the throughput step, 1 device, best of 3):\n")
    print(overhead_table(FLAGS.overhead_steps, [int(e) for e in FLAGS.every]))
    print(f"\n# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    flags.DEFINE_float("seconds", 5.0, "Timing budget per throughput measurement.")
    flags.DEFINE_integer("overhead_steps", 1000, "Steps of each run in the checkpoint-overhead table.")
    flags.DEFINE_list("ckpt_sizes", "256x128,1024x512,2048x1024,4096x2048", "d1 x width of the checkpointed models.")
    flags.DEFINE_list("every", ["0", "500", "100", "50"], "Checkpoint intervals for the overhead table (0: none).")
    flags.DEFINE_integer("worker_devices", 0, "Internal: run one throughput measurement on this many devices.")
    app.run(main)
