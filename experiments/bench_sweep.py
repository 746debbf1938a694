r"""Runs per hour of a sweep as one compiled program (vmapped over runs) against the same runs one after another.

    python -m experiments.bench_sweep [--sizes=default,small] [--rounds=5] [--host_devices=2] [--runs=N]
    python -m experiments.bench_sweep --profile [--sizes=small]

Each size is the synthetic config (complementary masking, info_nce) at its default size or at `small` (data.d1=64,
data.d=16, train.batch_size=128); its runs differ in data.sigma (one compiled group, as in sweep_sigma.py). Every
program is `cl_features.sweep.batched.build`, the sweep's own code path:
- sequential: each run alone (a group of one run on one device); the first --alone runs are timed, and N runs one
  after another take N times their mean.
- vmapped: the N runs in one program (`sweep.vmap_runs` side by side per device, 0: all, the rest in turn), on 1
  device or sharded over --host_devices forced CPU devices (XLA_FLAGS, set before JAX starts; they share the cores).
The programs are timed in alternation, one block of about --block seconds each per round; a ratio is the median
of the per-round ratios. Compilation is excluded: runs/hour is 3600 / (train.steps x the steady-state seconds per
run-step); the compile column (compile + first call) is what each program adds once. "CPU" is this process's CPU
time (all threads).

--profile traces the sequential program and the last vmapped one of a size under jax.profiler and sums the time of
XLA:CPU's operations by kind (from the compiled HLO), with the share of the traced time no operation covers.
"""

from __future__ import annotations

import glob
import os
import re
import statistics
import sys
import tempfile
import time

from absl import app, flags

from . import bench_common

FLAGS = flags.FLAGS

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
    """A built program, its state, its compile time and the calls that fill a timed block."""

    def __init__(self, c, group, traced: list, devices: int, side_by_side: int, block: float = 0.0):
        import jax

        from cl_features.sweep import batched

        t0 = time.perf_counter()
        self.program = batched.build(c, group.arm, traced, batched.make_mesh(devices), side_by_side)
        self.state, self.runs, self.steps = self.program.state, len(traced), c.train.steps_per_call
        self.call()
        jax.block_until_ready(self.state)
        self.compile_s = time.perf_counter() - t0
        self.reps = bench_common.calls_per_block(self.call, block)

    def call(self):
        import jax

        self.state, metrics = self.program.step_fn.fn(self.state, None)
        jax.block_until_ready(metrics)


def measure(size: str, rounds: int, host_devices: int, alone: int, block: float, runs: int = 0) -> dict:
    """{"config", "runs", "sequential": {...}, "vmapped": [{...}]} with seconds per run-step per round."""
    c, group = make_config(size, runs or RUNS[size])
    seq = [Timed(c, group, [t], 1, 0, block) for t in group.traced[:alone]]
    variants = [
        (label.replace("D devices", f"{host_devices} devices"), host_devices if d == "D" else d, k)
        for label, d, k in VARIANTS[size]
        if d != "D" or host_devices > 1
    ]
    vm = [Timed(c, group, group.traced, d, k, block) for _, d, k in variants]
    programs = seq + vm
    calls, reps = dict(enumerate(p.call for p in programs)), dict(enumerate(p.reps for p in programs))
    per_run_step = lambda seconds: [[x / (p.steps * p.runs) for x in seconds[i]] for i, p in enumerate(programs)]
    wall, cpu = map(per_run_step, bench_common.interleaved(calls, rounds, reps))  # s per run-step per round
    n = len(seq)
    return {
        "config": {"d1": c.data.d1, "d": c.data.d, "m": c.model.width, "batch": c.train.batch_size},
        "train_steps": c.train.steps,
        "runs": len(group.traced),
        "sequential": {
            "wall": [statistics.mean(xs) for xs in zip(*wall[:n])],
            "cpu": [statistics.mean(xs) for xs in zip(*cpu[:n])],
            "compile_s": statistics.mean(p.compile_s for p in seq),
        },
        "vmapped": [
            {"label": label, "devices": d, "side_by_side": k, "wall": w, "cpu": u, "compile_s": p.compile_s}
            for (label, d, k), p, w, u in zip(variants, vm, wall[n:], cpu[n:], strict=True)
        ],
    }


PROGRAMS = "size|program|compile s|ms per run-step|CPU ms per run-step|runs/h|vs sequential|CPU vs seq"
SUMMARY = (
    "size|d1|d|m|batch|runs|sequential runs/h|vmapped runs/h|vmapped program|CPU time: sequential/vmapped|"
    "vmapped/sequential"
)


def _size_rows(size: str, r: dict) -> tuple[list, list]:
    """The rows of every program of one size, and its summary row (its fastest vmapped program)."""
    med, seq, cfg = statistics.median, r["sequential"], r["config"]
    median_ratio = lambda num, den: med(a / b for a, b in zip(num, den, strict=True))  # of the per-round ratios
    speed = lambda p: median_ratio(seq["wall"], p["wall"])
    cpu = lambda p: median_ratio(seq["cpu"], p["cpu"])
    rate = lambda p: 3600.0 / (r["train_steps"] * med(p["wall"]))  # runs/h
    named = [("sequential (each run alone, 1 device)", f"{seq['compile_s']:.1f} per run", seq)]
    named += [(f"vmapped {r['runs']} runs, {v['label']}", f"{v['compile_s']:.1f}", v) for v in r["vmapped"]]
    programs = [
        [size, program, compile_s, f"{1e3 * med(p['wall']):.3f}", f"{1e3 * med(p['cpu']):.3f}", f"{rate(p):.0f}"]
        + [f"{speed(p):.2f}x", f"{cpu(p):.2f}x"]
        for program, compile_s, p in named
    ]
    best = max(r["vmapped"], key=speed)
    summary = [size, cfg["d1"], cfg["d"], cfg["m"], cfg["batch"], r["runs"], f"{rate(seq):.0f}", f"{rate(best):.0f}"]
    return programs, summary + [best["label"], f"{cpu(best):.2f}x", f"{speed(best):.2f}x"]


def tables(results: dict) -> str:
    """Markdown: every program of every size, then one row per size (its fastest vmapped program)."""
    rows = [_size_rows(size, r) for size, r in results.items()]
    programs = bench_common.table(PROGRAMS.split("|"), [row for size_rows, _ in rows for row in size_rows])
    return programs + "\n\n" + bench_common.table(SUMMARY.split("|"), [summary for _, summary in rows])


def classify(hlo_text: str) -> dict:
    """{instruction name: kind} for the instructions of a compiled HLO module that the CPU runtime times."""
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


def _trace(p: Timed, calls: int) -> tuple[float, list]:
    """Wall seconds of `calls` calls of p under jax.profiler; the (thread, op, start, end) events of XLA:CPU."""
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        t0 = time.perf_counter()
        for _ in range(calls):
            p.call()
        wall = time.perf_counter() - t0
        jax.profiler.stop_trace()
        with open(glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            data = jax.profiler.ProfileData.from_serialized_xspace(f.read())
    events = [
        (line.name, ev.name, ev.start_ns, ev.end_ns)
        for plane in data.planes
        for line in plane.lines
        if line.name.startswith("tf_XLAEigen")
        for ev in line.events
        if ev.duration_ns > 0 and not ev.name.startswith(SKIP_EVENTS)
    ]
    return wall, events


def profile(size: str, host_devices: int) -> list[list]:
    """Rows of the profile table: the sequential program and the size's last vmapped one."""
    c, group = make_config(size, RUNS[size])
    label, d, k = VARIANTS[size][-1]
    label = label.replace("D devices", f"{host_devices} devices")
    programs = {
        "sequential (one run alone)": Timed(c, group, group.traced[:1], 1, 0),
        f"vmapped {len(group.traced)} runs, {label}": Timed(c, group, group.traced, host_devices if d == "D" else d, k),
    }
    rows = []
    for name, p in programs.items():
        fn = p.program.step_fn.fn
        cells = {v: cell.cell_contents for v, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=True)}
        compiled = cells["program"].lower(cells["values"], cells["dictionaries"], p.state)
        kinds = classify(compiled.compile().as_text())
        calls = max(2, int(2.0 / min(p.compile_s, 2.0)))
        wall, events = _trace(p, calls)
        n_threads = min(len({e[0] for e in events}), os.cpu_count() or 1)
        shares = profile_shares(leaf_events(events), kinds, wall * 1e9, n_threads)
        total = sum(shares["ms"].values())
        rows.append(
            [size, name, f"{1e3 * wall / (calls * p.steps * p.runs):.3f}"]
            + [f"{100 * shares['ms'][kind] / total:.0f}%" for kind in KINDS]
            + [f"{100 * shares['uncovered']:.0f}% of {n_threads} threads"]
        )
    return rows


def main(argv):
    del argv
    if FLAGS.host_devices > 1 and "jax" not in sys.modules:
        flag = f"--xla_force_host_platform_device_count={FLAGS.host_devices}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    bench_common.check_sizes(FLAGS.sizes, SIZES)
    print(f"{bench_common.platform()}, {os.cpu_count()} cores")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if FLAGS.profile:
        rows = [row for size in FLAGS.sizes for row in profile(size, FLAGS.host_devices)]
        header = ["size", "program", "traced ms per run-step", *KINDS, "not in an operation"]
        print(bench_common.table(header, rows))
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
    flags.DEFINE_list("sizes", ["default", "small"], "Sizes to time: default, small.")
    flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds (one call of each program per round).")
    flags.DEFINE_integer("host_devices", 2, "Forced CPU devices the vmapped runs are sharded over (1: none).")
    flags.DEFINE_float("block", 0.5, "Seconds per timed block: each program repeats its call to fill about this.")
    flags.DEFINE_integer("alone", 3, "Runs built and timed alone for the sequential side.")
    flags.DEFINE_integer("runs", 0, "Runs in the sweep of every size timed (0: RUNS, the size's own).")
    flags.DEFINE_bool("profile", False, "Where the time goes instead (see the docstring).")
    app.run(main)
