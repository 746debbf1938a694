r"""Runs per hour of a sweep as one compiled program (vmapped over runs) against the same runs one after another.

    python -m experiments.bench_sweep [--sizes=default,small] [--rounds=5] [--host_devices=2] [--runs=N]
    python -m experiments.bench_sweep --profile [--sizes=small]

Each size is the synthetic config (experiments/configs/synthetic.py, complementary masking, info_nce) at its
default size or at `small` (data.d1=64, data.d=16, train.batch_size=128); the runs of a size differ in data.sigma
(one compiled group, as in experiments/configs/sweep_sigma.py). Every program is `cl_features.sweep.batched.build`,
the sweep's own code path:
- sequential: each run alone (a group of one run on one device), one after another. The first --alone runs are
  built and compiled alone; every run has the same shapes and program, so N runs one after another take N times
  their mean time per run.
- vmapped: the N runs in one program (`sweep.vmap_runs` runs side by side per device, 0: all of them, the rest in
  turn inside the program), on 1 device or with the runs sharded over --host_devices forced CPU devices
  (XLA_FLAGS=--xla_force_host_platform_device_count, set by this script before JAX starts; the forced devices
  share this machine's cores).

The programs are timed in alternation, one block of calls (train.steps_per_call steps each; about --block
seconds) of each per round, so that load from other jobs hits them alike; a ratio is the median of the per-round
ratios. Compilation is excluded: runs/hour is 3600 / (train.steps x the steady-state seconds per run-step),
extrapolated from these short timings, train.steps being the config's 12000; the compile column (compile + first
call) is what each program adds once. "CPU" is this process's CPU time (all threads),
which load from other jobs moves less than the wall clock.

--profile traces calls of the sequential program and of the best vmapped one under jax.profiler and sums the time
of XLA:CPU's operations by kind (from the compiled HLO): matmuls, random draws (the sampler's threefry bits and
normals), other element-wise fusions, cross-device waits; and the share of the traced time that no operation
covers (per-op and loop overhead).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["default", "small"], "Sizes to time: default, small.")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds (one call of each program per round).")
flags.DEFINE_integer("host_devices", 2, "Forced CPU devices the vmapped runs are sharded over (1: none).")
flags.DEFINE_float("block", 0.5, "Seconds per timed block: each program repeats its call to fill about this.")
flags.DEFINE_integer("alone", 3, "Runs built and timed alone for the sequential side.")
flags.DEFINE_integer("runs", 0, "Runs in the sweep of every size timed (0: RUNS, the size's own).")
flags.DEFINE_bool("profile", False, "Where the time goes instead (see the docstring).")

SIZES = {"default": {}, "small": {"data.d1": 64, "data.d": 16, "train.batch_size": 128}}
RUNS = {"default": 16, "small": 64}  # runs in the sweep of each size
# (label, devices, runs side by side per device; 0: all); "D" is --host_devices.
VARIANTS = {
    "default": [
        ("1 device, all side by side", 1, 0),
        ("1 device, 1 at a time", 1, 1),
        ("D devices, all side by side", "D", 0),
        ("D devices, 1 at a time", "D", 1),
    ],
    "small": [
        ("1 device, all side by side", 1, 0),
        ("D devices, all side by side", "D", 0),
        ("D devices, 8 side by side", "D", 8),
    ],
}


def make_config(size: str, runs: int):
    from cl_features.sweep import grid

    from .configs import sweep_sigma

    c = sweep_sigma.get_config()
    c.arms = "complementary_mask"
    c.update_from_flattened_dict(SIZES[size])
    c.sweep.x = "data.sigma=" + ",".join(f"{0.1 + 0.9 * i / max(runs - 1, 1):.4f}" for i in range(runs))
    c.sweep.seeds = 1
    sweep = grid.expand(c)
    group = sweep.groups[0]
    return grid.run_config(c, sweep.runs[group.runs[0]]), group


class Timed:
    """A built program, its state and its timings per call."""

    def __init__(self, c, group, traced: list, devices: int, side_by_side: int, block: float = 0.0):
        import jax

        from cl_features.sweep import batched

        t0 = time.perf_counter()
        self.program = batched.build(c, group.arm, traced, batched.make_mesh(devices), side_by_side)
        self.state, self.runs, self.steps = self.program.state, len(traced), c.train.steps_per_call
        self.call()
        jax.block_until_ready(self.state)
        self.compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.call()
        self.reps = max(1, round(block / max(time.perf_counter() - t0, 1e-6)))  # calls per timed block
        self.wall, self.cpu = [], []  # seconds per call

    def call(self):
        import jax

        self.state, metrics = self.program.step_fn.fn(self.state, None)
        jax.block_until_ready(metrics)

    def timed_call(self):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(self.reps):
            self.call()
        self.wall.append((time.perf_counter() - t0) / self.reps)
        self.cpu.append((time.process_time() - c0) / self.reps)


def measure(size: str, rounds: int, host_devices: int, alone: int, block: float, runs: int = 0) -> dict:
    """{"config", "runs", "sequential": {...}, "vmapped": [{...}]} with seconds per run-step per round."""
    c, group = make_config(size, runs or RUNS[size])
    n = len(group.traced)
    seq = [Timed(c, group, [t], 1, 0, block) for t in group.traced[:alone]]
    variants = [
        (label.replace("D devices", f"{host_devices} devices"), host_devices if d == "D" else d, k)
        for label, d, k in VARIANTS[size]
        if d != "D" or host_devices > 1
    ]
    vm = [Timed(c, group, group.traced, d, k, block) for _, d, k in variants]
    for _ in range(rounds):
        for p in seq:
            p.timed_call()
        for p in vm:
            p.timed_call()
    per = lambda t, p: [x / (p.steps * p.runs) for x in t]  # noqa: E731
    seq_wall = [statistics.mean(ws) for ws in zip(*[per(p.wall, p) for p in seq])]
    seq_cpu = [statistics.mean(cs) for cs in zip(*[per(p.cpu, p) for p in seq])]
    return {
        "config": {"d1": c.data.d1, "d": c.data.d, "m": c.model.width, "batch": c.train.batch_size},
        "train_steps": c.train.steps,
        "runs": n,
        "sequential": {"wall": seq_wall, "cpu": seq_cpu, "compile_s": statistics.mean(p.compile_s for p in seq)},
        "vmapped": [
            {"label": label, "devices": d, "side_by_side": k, "wall": per(p.wall, p), "cpu": per(p.cpu, p)}
            | {"compile_s": p.compile_s}
            for (label, d, k), p in zip(variants, vm, strict=True)
        ],
    }


def _median_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def runs_per_hour(seconds_per_run_step: float, train_steps: int) -> float:
    return 3600.0 / (train_steps * seconds_per_run_step)


def tables(results: dict) -> str:
    """Markdown: every program of every size, then one row per size (its fastest vmapped program)."""
    head = (
        "| size | program | compile s | ms per run-step | CPU ms per run-step | runs/h | vs sequential | CPU vs seq |"
    )
    lines = [head, "|---" * 8 + "|"]
    summary = [
        "| size | d1 | d | m | batch | runs | sequential runs/h | vmapped runs/h | vmapped program | "
        "CPU time: sequential/vmapped | vmapped/sequential |",
        "|---" * 11 + "|",
    ]
    for size, r in results.items():
        seq, steps = r["sequential"], r["train_steps"]
        med = lambda xs: statistics.median(xs)  # noqa: E731
        lines.append(
            f"| {size} | sequential (each run alone, 1 device) | {seq['compile_s']:.1f} per run | "
            f"{1e3 * med(seq['wall']):.3f} | {1e3 * med(seq['cpu']):.3f} | {runs_per_hour(med(seq['wall']), steps):.0f}"
            " | 1.00x | 1.00x |"
        )
        best = None
        for v in r["vmapped"]:
            speed, cpu = _median_ratio(seq["wall"], v["wall"]), _median_ratio(seq["cpu"], v["cpu"])
            wall, cpu_ms, rate = 1e3 * med(v["wall"]), 1e3 * med(v["cpu"]), runs_per_hour(med(v["wall"]), steps)
            lines.append(
                f"| {size} | vmapped {r['runs']} runs, {v['label']} | {v['compile_s']:.1f} | {wall:.3f} | {cpu_ms:.3f}"
                f" | {rate:.0f} | {speed:.2f}x | {cpu:.2f}x |"
            )
            if best is None or speed > best[0]:
                best = (speed, cpu, v)
        speed, cpu, v = best
        cfg = r["config"]
        summary.append(
            f"| {size} | {cfg['d1']} | {cfg['d']} | {cfg['m']} | {cfg['batch']} | {r['runs']} | "
            f"{runs_per_hour(med(seq['wall']), steps):.0f} | {runs_per_hour(med(v['wall']), steps):.0f} | "
            f"{v['label']} | {cpu:.2f}x | {speed:.2f}x |"
        )
    return "\n".join(lines + [""] + summary)


def classify(hlo_text: str) -> dict:
    """{instruction name: kind} for the instructions of a compiled HLO module that the CPU runtime times."""
    import re

    bodies, current = {}, None
    for line in hlo_text.splitlines():
        m = re.match(r"^(?:ENTRY )?%(\S+) ", line)
        if m:
            current, bodies[m.group(1)] = m.group(1), []
        elif current:
            bodies[current].append(line)
    kinds = {}
    for line in hlo_text.splitlines():
        m = re.match(r"^\s*(?:ROOT )?%(\S+) = .*? (\w[\w-]*)\(", line)
        if not m:
            continue
        name, op = m.groups()
        called = re.search(r"calls=%([\w.-]+)", line)
        body = "\n".join(bodies.get(called.group(1), [])) if called else ""
        text = line + body
        if op in ("dot", "convolution") or "__ynn_fusion" in line or " dot(" in body:
            kinds[name] = "matmuls"
        elif op.startswith(("all-", "collective", "reduce-scatter")):
            kinds[name] = "cross-device waits"
        elif re.search(r"jit\((normal|uniform|bits|bernoulli|threefry\w*|_?random\w*)\)", text):
            kinds[name] = "random draws"
        else:
            kinds[name] = "other element-wise and copies"
    return kinds


# Runtime events, not operations ("end: <op>" is a part of <op>'s own event).
SKIP_EVENTS = ("ThunkExecutor", "ThreadpoolListener", "end: ")
KINDS = ("matmuls", "random draws", "other element-wise and copies", "cross-device waits")


def leaf_events(events: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int]]:
    """(thread, op name, start ns, end ns) -> (thread, op name, duration ns) of the events that contain no other
    event of their thread (a while loop's or a call's event spans the operations inside it)."""
    out, by_thread = [], {}
    for thread, name, start, end in events:
        by_thread.setdefault(thread, []).append((start, -end, name))
    for thread, evs in by_thread.items():
        evs.sort()
        for i, (start, neg_end, name) in enumerate(evs):
            inner = i + 1 < len(evs) and evs[i + 1][0] < -neg_end
            if not inner:
                out.append((thread, name, -neg_end - start))
    return out


def profile_shares(events: list[tuple[str, str, int]], kinds: dict, wall_ns: float, threads: int) -> dict:
    """Leaf events (thread, op name, duration ns) on the XLA:CPU threads -> ms by kind and the share of
    threads x wall time that no operation covers."""
    by = dict.fromkeys(KINDS, 0.0)
    for _, name, ns in events:
        if name.startswith(("Rendezvous", "Wait")):
            kind = "cross-device waits"
        else:
            kind = kinds.get(name, "other element-wise and copies")
        by[kind] += ns
    covered = sum(by.values())
    return {"ms": {k: v / 1e6 for k, v in by.items()}, "uncovered": 1.0 - covered / (wall_ns * threads)}


def profile(size: str, host_devices: int) -> str:
    import glob
    import tempfile

    import jax

    c, group = make_config(size, RUNS[size])
    label, d, k = VARIANTS[size][-1]
    programs = [
        ("sequential (one run alone)", Timed(c, group, group.traced[:1], 1, 0)),
        (f"vmapped {len(group.traced)} runs, {label.replace('D devices', f'{host_devices} devices')}", None),
    ]
    programs[1] = (programs[1][0], Timed(c, group, group.traced, host_devices if d == "D" else d, k))
    rows = []
    for name, p in programs:
        cells = dict(zip(p.program.step_fn.fn.__code__.co_freevars, p.program.step_fn.fn.__closure__, strict=True))
        compiled = cells["program"].cell_contents.lower(
            cells["values"].cell_contents, cells["dictionaries"].cell_contents, p.state
        )
        kinds = classify(compiled.compile().as_text())
        calls = max(2, int(2.0 / min(p.compile_s, 2.0)))
        with tempfile.TemporaryDirectory() as tmp:
            jax.profiler.start_trace(tmp)
            t0 = time.perf_counter()
            for _ in range(calls):
                p.call()
            wall = time.perf_counter() - t0
            jax.profiler.stop_trace()
            path = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0]
            with open(path, "rb") as f:
                data = jax.profiler.ProfileData.from_serialized_xspace(f.read())
        events = [
            (line.name, ev.name, ev.start_ns, ev.end_ns)
            for plane in data.planes
            for line in plane.lines
            if line.name.startswith("tf_XLAEigen")
            for ev in line.events
            if ev.duration_ns > 0 and not ev.name.startswith(SKIP_EVENTS)
        ]
        n_threads = min(len({e[0] for e in events}), os.cpu_count() or 1)
        shares = profile_shares(leaf_events(events), kinds, wall * 1e9, n_threads)
        run_steps = calls * p.steps * p.runs
        total = sum(shares["ms"].values())
        rows.append(
            f"| {size} | {name} | {1e3 * wall / run_steps:.3f} | "
            + " | ".join(f"{100 * shares['ms'][kd] / total:.0f}%" for kd in KINDS)
            + f" | {100 * shares['uncovered']:.0f}% of {n_threads} threads |"
        )
    head = "| size | program | traced ms per run-step | " + " | ".join(KINDS) + " | not in an operation |"
    return "\n".join([head, "|---" * (4 + len(KINDS)) + "|"] + rows)


def main(argv):
    del argv
    if FLAGS.host_devices > 1 and "jax" not in sys.modules:
        flag = f"--xla_force_host_platform_device_count={FLAGS.host_devices}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    import jax

    for size in FLAGS.sizes:
        if size not in SIZES:
            raise SystemExit(f"error: --sizes entries must be in {sorted(SIZES)}, got {size!r}")
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}, {os.cpu_count()} cores")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if FLAGS.profile:
        tables_ = [profile(size, FLAGS.host_devices).split("\n") for size in FLAGS.sizes]
        print("\n".join(tables_[0] + [row for t in tables_[1:] for row in t[2:]]))
    else:
        results = {
            size: measure(size, FLAGS.rounds, FLAGS.host_devices, FLAGS.alone, FLAGS.block, FLAGS.runs)
            for size in FLAGS.sizes
        }
        steps = next(iter(results.values()))["train_steps"]
        print(f"{FLAGS.rounds} interleaved rounds; compile excluded from runs/h (train.steps = {steps})")
        print(tables(results))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    app.run(main)
