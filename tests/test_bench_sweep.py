"""experiments/bench_sweep.py's arithmetic on fake timings and a fake trace (nothing timed, no JAX program); the benches
import side by side."""

from experiments import bench_sweep


def fake_results():
    seq = {"wall": [4e-4, 5e-4, 3e-4], "cpu": [2e-4, 2e-4, 2e-4], "compile_s": 4.0}
    slow = {"label": "1 device, all side by side", "devices": 1, "side_by_side": 0, "compile_s": 6.0}
    fast = {"label": "2 devices, 8 side by side", "devices": 2, "side_by_side": 8, "compile_s": 7.0}
    slow |= {"wall": [2e-4, 5e-4, 6e-4], "cpu": [1e-4, 1e-4, 1e-4]}
    fast |= {"wall": [1e-4, 1e-4, 1e-4], "cpu": [1e-4, 5e-5, 1e-4]}
    config = {"d1": 64, "d": 16, "m": 64, "batch": 128}
    return {"small": {"config": config, "train_steps": 12000, "runs": 64, "sequential": seq, "vmapped": [slow, fast]}}


def test_tables_give_median_per_round_ratios_and_runs_per_hour():
    lines = bench_sweep.tables(fake_results()).splitlines()
    assert (
        lines[2]
        == "| small | sequential (each run alone, 1 device) | 4.0 per run | 0.400 | 0.200 | 750 | 1.00x | 1.00x |"
    )
    # per-round wall ratios 2, 1, 0.5 -> median 1.00x; 4, 5, 3 -> 4.00x; runs/h = 3600 / (12000 x median s)
    assert lines[3].endswith("| 6.0 | 0.500 | 0.100 | 600 | 1.00x | 2.00x |")
    assert lines[4].endswith("| 7.0 | 0.100 | 0.100 | 3000 | 4.00x | 2.00x |")
    head, rule, row = lines[-3:]
    assert head.split(" | ")[-1] == "vmapped/sequential |" and rule.count("|---") == 11
    assert row == "| small | 64 | 16 | 64 | 128 | 64 | 750 | 3000 | 2 devices, 8 side by side | 2.00x | 4.00x |"


def test_profile_counts_leaf_operations_by_kind():
    hlo = "\n".join(
        [
            "%fused_computation.1 (p: u32[4]) -> f32[4] {",
            '  %e = f32[4] erf-inv(%p), metadata={op_name="jit(f)/jit(normal)/erf_inv"}',
            "}",
            "ENTRY %main (a: f32[4,4]) -> f32[4,4] {",
            "  %dot.3 = f32[4,4]{1,0} dot(%a, %a), lhs_contracting_dims={1}, rhs_contracting_dims={0}",
            '  %ynn_fusion.2 = f32[4,4]{1,0} fusion(%a), kind=kCustom, calls=%fc, backend_config={"__ynn_fusion"}',
            "  %noise = f32[4]{0} fusion(%a), kind=kLoop, calls=%fused_computation.1",
            "  %all-reduce.1 = f32[] all-reduce(%a), channel_id=1",
            "  ROOT %copy.1 = f32[4,4]{1,0} copy(%a)",
            "}",
        ]
    )
    kinds = bench_sweep.classify(hlo)
    assert kinds == {
        "e": "random draws",  # (inside a fusion: never an event of its own)
        "dot.3": "matmuls",
        "ynn_fusion.2": "matmuls",
        "noise": "random draws",
        "all-reduce.1": "cross-device waits",
        "copy.1": "other element-wise and copies",
    }
    # A while loop's event spans the two operations inside it: only they count.
    events = [("t0", "while.1", 0, 100), ("t0", "dot.3", 10, 40), ("t0", "noise", 50, 70), ("t1", "copy.1", 0, 20)]
    leaves = bench_sweep.leaf_events(events)
    assert sorted(leaves) == [("t0", "dot.3", 30), ("t0", "noise", 20), ("t1", "copy.1", 20)]
    shares = bench_sweep.profile_shares(leaves + [("t1", "Rendezvous", 10)], kinds, wall_ns=100, threads=2)
    assert shares["ms"] == {
        "matmuls": 30e-6,
        "random draws": 20e-6,
        "other element-wise and copies": 20e-6,
        "cross-device waits": 10e-6,
    }
    assert shares["uncovered"] == 1 - 80 / 200


def test_the_benches_import_side_by_side():
    """Each bench defines its flags only when run as a command, so importing several defines no flag twice."""
    import importlib

    for name in ("bench_synthetic", "bench_scaling", "bench_images"):
        importlib.import_module(f"experiments.{name}")
