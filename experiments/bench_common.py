"""What the benchmarks share: the platform line, the torch check, the synthetic config, interleaved timing and
markdown tables.

JAX is imported inside the functions: bench_sweep sets XLA_FLAGS before JAX starts.
"""

from __future__ import annotations

import time


def platform() -> str:
    import jax

    return f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}"


def torch_version(mode: str, threads: bool = False) -> str | None:
    """torch's version (with its thread count) if --torch=auto|on times it, else None; on without torch exits."""
    if mode == "off":
        return None
    try:
        import torch
    except ImportError:
        if mode == "on":
            raise SystemExit("error: --torch=on but torch is not installed (pip install torch==2.13.0)") from None
        return None
    return torch.__version__ + (f" ({torch.get_num_threads()} threads)" if threads else "")


def check_sizes(sizes: list[str], known: dict) -> None:
    for size in sizes:
        if size not in known:
            raise SystemExit(f"error: --sizes entries must be in {sorted(known)}, got {size!r}")


def synthetic_config(**over):
    """experiments/configs/synthetic.py with the dotted fields `over` set, validated."""
    from cl_features.synthetic import arms

    from .configs import synthetic

    c = synthetic.get_config()
    c.update_from_flattened_dict(over)
    return arms.validate(c)


def stepper(fn, state, batches=None):
    """A callable running `state, metrics = fn(state, batches)` once, keeping the state; returns the metrics."""
    import jax

    holder = [state]

    def call():
        holder[0], metrics = fn(holder[0], batches)
        return jax.block_until_ready(metrics)

    return call


def calls_per_block(call, seconds: float) -> int:
    """Calls that fill about `seconds`, from one timed call after a warm-up call."""
    call()
    t0 = time.perf_counter()
    call()
    return max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))


def interleaved(calls: dict, rounds: int, reps: dict | None = None) -> tuple[dict, dict]:
    """Wall and CPU seconds (this process, all threads) per call of each callable, one list entry per round.

    Each round runs one block of `reps[name]` calls of each in turn, so that load from other jobs hits them alike;
    reps=None: one call per block, after a warm-up call of each."""
    if reps is None:
        for call in calls.values():
            call()
        reps = dict.fromkeys(calls, 1)
    wall, cpu = {name: [] for name in calls}, {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(reps[name]):
                call()
            wall[name].append((time.perf_counter() - t0) / reps[name])
            cpu[name].append((time.process_time() - c0) / reps[name])
    return wall, cpu


def table(header, rows, right_from: int | None = None) -> str:
    """A markdown table; columns from `right_from` on are right-aligned."""
    rule = "".join("|---:" if right_from is not None and i >= right_from else "|---" for i in range(len(header)))
    lines = ["| " + " | ".join(header) + " |", rule + "|"] + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
