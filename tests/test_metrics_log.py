"""MetricsLog: JSON lines plus TensorBoard event files that TensorBoard's own reader loads; only process 0 writes."""

import glob
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cl_features.jsonio import read_jsonl
from cl_features.train import loop
from cl_features.train.metrics_log import MetricsLog, log_figures, truncate_jsonl

ROWS = [
    (10, {"loss": np.float32(1.25), "acc": 0.5, "lr": jnp.asarray(0.1), "count": np.int64(7)}),
    (20, {"loss": 0.75, "acc": float("nan"), "hist": np.arange(3), "flag": True, "name": "x"}),
]


def tensorboard(logdir) -> EventAccumulator:
    """TensorBoard's reader over the event files directly inside `logdir` (images kept: all of them)."""
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def event_files(logdir) -> list[str]:
    return sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))


def write_rows(path, rows=ROWS, **kwargs):
    with MetricsLog(str(path), **kwargs) as log:
        for step, metrics in rows:
            log.write(step, metrics)
    assert log._writer is None  # closed by `with`


def test_jsonl_rows_and_event_scalars(tmp_path):
    path = tmp_path / "arm" / "metrics.jsonl"
    write_rows(path)
    rows = read_jsonl(str(path))
    assert rows[0] == {"step": 10, "loss": 1.25, "acc": 0.5, "lr": pytest.approx(0.1), "count": 7}
    assert rows[1]["hist"] == [0, 1, 2] and rows[1]["flag"] is True and rows[1]["acc"] is None

    assert len(event_files(tmp_path / "arm")) == 1
    tb = tensorboard(tmp_path / "arm")
    # Finite real-valued scalars only (no arrays, bools, strings, NaN); values are float32 in the event file.
    assert set(tb.Tags()["scalars"]) == {"loss", "acc", "lr", "count"}
    series = {tag: [(e.step, e.value) for e in tb.Scalars(tag)] for tag in tb.Tags()["scalars"]}
    assert series["loss"] == [(10, 1.25), (20, 0.75)]
    assert series["lr"] == [(10, float(np.float32(0.1)))]
    assert series["count"] == [(10, 7.0)]
    assert series["acc"] == [(10, 0.5)]


def test_figures_become_images(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    png = tmp_path / "figure.png"
    Image.fromarray(pixels).save(png)
    log_figures(str(tmp_path / "tb"), 100, {"figure": str(png)})
    (image,) = tensorboard(tmp_path / "tb").Images("figure")
    assert (image.step, image.height, image.width) == (100, 30, 50)
    decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(decoded, pixels)


def test_only_process_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    png, run = tmp_path / "figure.png", tmp_path / "run"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png)
    write_rows(run / "arm" / "metrics.jsonl")
    log_figures(str(run), 1, {"figure": str(png)})
    assert not run.exists()


def test_tensorboard_off_writes_jsonl_only(tmp_path):
    write_rows(tmp_path / "metrics.jsonl", tensorboard=False)
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_flushed_before_close_and_one_file_per_log(tmp_path):
    """A killed run keeps what it logged; a resumed run (a second log on the same dir) clobbers nothing."""
    first, second = MetricsLog(str(tmp_path / "metrics.jsonl")), MetricsLog(str(tmp_path / "metrics.jsonl"))
    first.write(1, {"loss": 2.0})
    second.write(2, {"loss": 1.0})
    assert len(event_files(tmp_path)) == 2
    assert sorted((e.step, e.value) for e in tensorboard(tmp_path).Scalars("loss")) == [(1, 2.0), (2, 1.0)]
    first.close()
    second.close()


def test_jsonl_is_plain_json(tmp_path):
    write_rows(tmp_path / "m.jsonl", [(3, {"v": jnp.ones((2,)), "ok": np.bool_(True)})], tensorboard=False)
    assert json.loads((tmp_path / "m.jsonl").read_text()) == {"step": 3, "v": [1.0, 1.0], "ok": True}


def _refuse(name):
    raise ValueError(f"not strict JSON: {name}")


def test_jsonl_is_strict_json_non_finite_as_null(tmp_path):
    rows = [(1, {"nan": float("nan"), "inf": np.float32(np.inf), "v": np.array([1.0, -np.inf]), "ok": 2.5})]
    write_rows(tmp_path / "m.jsonl", rows, tensorboard=False)
    parsed = json.loads((tmp_path / "m.jsonl").read_text(), parse_constant=_refuse)
    assert parsed == {"step": 1, "nan": None, "inf": None, "v": [1.0, None], "ok": 2.5}


def test_truncate_jsonl_drops_later_and_torn_rows(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": s / 7}) + "\n" for s in (10, 20, 30)) + '{"step": 4')
    assert truncate_jsonl(str(path), 20) == 2
    assert read_jsonl(str(path)) == [{"step": 10, "loss": 10 / 7}, {"step": 20, "loss": 20 / 7}]
    assert truncate_jsonl(str(tmp_path / "missing.jsonl"), 5) == 0 and not (tmp_path / "missing.jsonl").exists()


def test_progress_line(capsys):
    loop.Progress("arm", 100, start_step=20).update(40, {"loss": 0.123456, "hist": np.arange(3)})
    out = capsys.readouterr().out
    assert out.startswith("[arm] step 40/100  loss 0.1235  ") and "steps/s  ETA" in out and "hist" not in out


def test_progress_rate_leaves_out_the_first_call_and_adds_the_whole_run(capsys):
    """Fake clock: the first call (steps 0-10) takes 10 s, compilation included; then 10 steps/s."""
    now = [0.0]
    progress = loop.Progress("b", 100, part=(1, 3), clock=lambda: now[0])
    now[0] = 10.0
    progress.first_call_done(10)
    assert progress.update(10, {"loss": 1.0}) == {}  # no step timed after the first call yet
    assert capsys.readouterr().out == "[b] step 10/100  loss 1  -- steps/s  ETA --  run ETA -- (2 of 3)\n"
    now[0] = 12.0
    assert progress.update(30, {"loss": 0.5}) == {"steps_per_second": pytest.approx(10.0)}
    # 70 steps left at 10 steps/s; then the third part: 100 steps plus its compilation, 10 s - 10 steps / 10 = 9 s.
    assert capsys.readouterr().out == "[b] step 30/100  loss 0.5  10.0 steps/s  ETA 7s  run ETA 26s (2 of 3)\n"
    now[0] = 13.0
    assert progress.update(35, {}) == {"steps_per_second": pytest.approx(5.0)}  # since the row before
    # The ETA's rate is the mean since the first call: 25 steps in 3 s.
    assert capsys.readouterr().out == "[b] step 35/100    8.3 steps/s  ETA 8s  run ETA 29s (2 of 3)\n"
    assert [loop.duration(s) for s in (None, 59.4, 61, 3720)] == ["--", "59s", "1m01s", "1h02m"]


def test_fit_times_steps_after_the_first_call_and_logs_rate_and_throughput(tmp_path, capsys):
    now = [0.0]

    def fn(state, _):  # the first call compiles: 9 s, then 1 s a call of 5 steps
        now[0] += 9.0 if int(state.step) == 0 else 1.0
        return state._replace(step=state.step + 5), {"loss": jnp.float32(0.25)}

    state = loop.TrainState(jnp.int32(0), {}, {}, {}, jnp.zeros(2, jnp.uint32))
    step_fn = loop.StepFn(fn, 5, learning_rate=lambda s: 0.1 * (s + 1), examples_per_step=8)
    with MetricsLog(str(tmp_path / "metrics.jsonl")) as log:
        progress = loop.Progress("t", 20, clock=lambda: now[0])
        measure = lambda step, st: now.__setitem__(0, now[0] + (30.0 if step == 10 else 0.0)) or {"m": 1.0}
        loop.fit(step_fn, state, mesh=None, total_steps=20, log_every=10, metrics_log=log, progress=progress,
                 on_log=measure)  # fmt: skip
    # The first measurement (30 s: it compiles) is left out like the first call.
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[t] step 10/20  loss 0.25  m 1  5.0 steps/s  ETA 2s",
        "[t] step 20/20  loss 0.25  m 1  5.0 steps/s  ETA 0s",
    ]
    tb = tensorboard(tmp_path)
    series = {t: [(e.step, e.value) for e in tb.Scalars(t)] for t in ("learning_rate", "examples_per_second")}
    assert series["learning_rate"] == [(10, pytest.approx(1.0)), (20, pytest.approx(2.0))]  # of steps 9 and 19
    assert series["examples_per_second"] == [(10, 40.0), (20, 40.0)]  # 5 steps x 8 examples a second
    assert read_jsonl(str(tmp_path / "metrics.jsonl")) == [{"step": s, "loss": 0.25, "m": 1.0} for s in (10, 20)]
