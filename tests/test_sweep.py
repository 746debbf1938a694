"""The sweep at toy size: a vmapped run equals the run alone, resume equals uninterrupted, bad values refused early."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from cl_features.report import kinds
from cl_features.sweep import batched, grid, run
from cl_features.synthetic import arms
from cl_features.train import checkpoint
from experiments.configs import sweep_sigma


def toy(steps=100, x="data.sigma=0.2,0.4", y="", seeds=2, arms_="complementary_mask"):
    c = sweep_sigma.get_config()
    c.arms = arms_
    c.data.d, c.data.d1 = 8, 32
    c.model.bias_ramp_steps = 50
    c.train.batch_size, c.train.steps, c.train.steps_per_call, c.train.log_every = 64, steps, 25, 50
    c.checkpoint.every = 50
    c.measure.num_samples = 256
    c.sweep.x, c.sweep.y, c.sweep.seeds = x, y, seeds
    return c


def test_a_vmapped_run_gives_the_results_of_the_run_alone():
    c = toy(y="model.bias_c=1.5,2.5")  # 8 runs, two traced axes and seeds in one compiled group
    out = run.run(run.validate(c), None)
    assert len(out["runs"]) == 8 and len(grid.expand(c).groups) == 1
    for r in out["runs"][::3]:
        alone = arms.run(grid.run_config(c, r["values"]), None, verbose=False)["arms"][r["values"]["arm"]]
        for k, v in r["results"].items():
            if isinstance(v, float):
                # Float32 rounding only: XLA:CPU gives the same bits; a batched matmul may sum in another order
                # on other backends, and 100 SGD steps amplify that to about 1e-5 of the values.
                assert v == pytest.approx(alone[k], rel=1e-4, abs=1e-5), k


def test_killed_and_restarted_equals_uninterrupted_and_finished_groups_are_not_retrained(tmp_path, monkeypatch):
    c = toy(arms_="complementary_mask,none")  # two groups of 4 runs
    whole = run.run(run.validate(c), str(tmp_path / "whole"))
    original, calls = checkpoint.Checkpointer.maybe_save, [0]

    class Killed(Exception):
        pass

    def maybe_save(self, step, state, **kw):
        saved = original(self, step, state, **kw)
        calls[0] += 1
        if calls[0] == 6:  # group 2 at step 50, just saved
            raise Killed
        return saved

    monkeypatch.setattr(checkpoint.Checkpointer, "maybe_save", maybe_save)
    with pytest.raises(Killed):
        run.run(c, str(tmp_path / "resumed"))
    monkeypatch.setattr(checkpoint.Checkpointer, "maybe_save", original)
    built = []
    monkeypatch.setattr(batched, "build", lambda *a, _b=batched.build: built.append(a[1]) or _b(*a))
    resumed = run.run(c, str(tmp_path / "resumed"))
    assert built == ["none"]  # the finished group is read back, not rebuilt
    assert [r["results"] for r in resumed["runs"]] == [r["results"] for r in whole["runs"]]
    saved = json.loads((tmp_path / "resumed" / "sweep.json").read_text())
    assert [r["values"] for r in saved["runs"]] == [r["values"] for r in whole["runs"]]
    rows = (tmp_path / "resumed" / "groups" / "01_none_info_nce" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in rows] == [50, 100]
    assert len(json.loads(rows[-1])["recovered_fraction"]) == 4  # one value per run
    assert (tmp_path / "resumed" / "phase_diagram.png").stat().st_size > 10000
    assert set(kinds.make_report(str(tmp_path / "resumed")).written) == {"phase_diagram.png", "sweep.md"}


def test_a_diverging_run_stops_alone():
    c = toy(x="train.learning_rate=0.2,1e6", seeds=1)
    rows = [r["results"] for r in run.run(run.validate(c), None)["runs"]]
    assert rows[0]["diverged_at"] == 0 and np.isfinite(rows[0]["final_loss"])
    assert rows[1]["diverged_at"] > 0 and np.isfinite(rows[1]["final_loss"])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sweep.x", "data.sigmaa=1", "config.sweep.x must be 'field=v1,v2,...'"),
        ("sweep.x", "seed=1,2", "config.sweep.x must be"),
        ("sweep.x", "data.sigma=-1,1", "config.data.sigma must be >= 0"),
        ("sweep.x", "data.d1=32.5", "config.data.d1 must be int"),
        ("sweep.y", "data.sigma=1", "config.sweep.y must be a field other than sweep.x's"),
        ("sweep.seeds", 0, "config.sweep.seeds must be an int >= 1"),
        ("sweep.objectives", "info_nce,foo", "config.objective.name must be one of"),
    ],
)
def test_bad_values_are_refused_before_compiling(field, value, message, monkeypatch):
    c = toy()
    c.update_from_flattened_dict({field: value})
    monkeypatch.setattr(batched, "build", lambda *a: pytest.fail("compiled"))
    with pytest.raises(ValueError, match=re.escape(message)):
        run.run(run.validate(c), None)


def test_two_devices_share_the_runs_and_give_the_same_results():
    """3 runs on 2 (forced host) devices, one run side by side per device: padded to 4, two blocks in turn."""
    code = (
        "import json, sys; sys.path.insert(0, 'tests'); from test_sweep import toy; from cl_features.sweep import run;"
        "c = toy(x='data.sigma=0.2,0.3,0.4', seeds=1); c.sweep.vmap_runs = 1;"
        "print(json.dumps([r['results'] for r in run.run(run.validate(c), None)['runs']]))"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "on 2 device(s)" in out.stdout
    one = run.run(run.validate(toy(x="data.sigma=0.2,0.3,0.4", seeds=1)), None)["runs"]
    assert json.loads(out.stdout.splitlines()[-1]) == [r["results"] for r in one]
