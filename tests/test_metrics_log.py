"""MetricsLog: JSON lines plus TensorBoard event files that load without TensorFlow; only process 0 writes."""

import io
import json
import math
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cl_features.train import metrics_log
from cl_features.train.metrics_log import MetricsLog, TensorBoardLog, log_figures, read_events, read_scalars


def crc32c_reference(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def masked_reference(data: bytes) -> int:
    crc = crc32c_reference(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def raw_records(path: str) -> list[bytes]:
    """TFRecord payloads of one file, every CRC checked against the reference above."""
    with open(path, "rb") as f:
        data = f.read()
    records, pos = [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == masked_reference(header)
        payload = data[pos + 12 : pos + 12 + length]
        assert struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] == masked_reference(payload)
        records.append(payload)
        pos += 16 + length
    assert pos == len(data)
    return records


ROWS = [
    (10, {"loss": np.float32(1.25), "acc": 0.5, "lr": jnp.asarray(0.1), "count": np.int64(7)}),
    (20, {"loss": 0.75, "acc": float("nan"), "hist": np.arange(3), "flag": True, "name": "x"}),
]


def test_crc32c_reference_known_value():
    assert crc32c_reference(b"123456789") == 0xE3069283


def test_jsonl_rows_and_event_scalars(tmp_path):
    path = tmp_path / "arm" / "metrics.jsonl"
    with MetricsLog(str(path)) as log:
        for step, metrics in ROWS:
            log.write(step, metrics)
    rows = metrics_log.read_jsonl(str(path))
    assert rows[0] == {"step": 10, "loss": 1.25, "acc": 0.5, "lr": pytest.approx(0.1), "count": 7}
    assert rows[1]["hist"] == [0, 1, 2] and rows[1]["flag"] is True and math.isnan(rows[1]["acc"])

    files = metrics_log.event_files(str(tmp_path / "arm"))
    assert len(files) == 1
    scalars = read_scalars(str(tmp_path / "arm"))
    # Real-valued scalars only (no arrays, bools, strings); values are float32 in the proto.
    assert set(scalars) == {"loss", "acc", "lr", "count"}
    assert scalars["loss"] == [(10, 1.25), (20, 0.75)]
    assert scalars["lr"] == [(10, float(np.float32(0.1)))]
    assert scalars["count"] == [(10, 7.0)]
    assert scalars["acc"][0] == (10, 0.5) and scalars["acc"][1][0] == 20 and math.isnan(scalars["acc"][1][1])


def test_event_file_framing_matches_reference(tmp_path):
    with MetricsLog(str(tmp_path / "metrics.jsonl")) as log:
        for step, metrics in ROWS:
            log.write(step, metrics)
    (path,) = metrics_log.event_files(str(tmp_path))
    payloads = raw_records(path)
    events = read_events(path)
    assert [e.SerializeToString() for e in events] == payloads
    assert events[0].file_version == "brain.Event:2"
    assert [e.step for e in events[1:]] == [10, 20]


def test_figures_become_images(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    png = tmp_path / "figure.png"
    Image.fromarray(pixels).save(png)
    log_figures(str(tmp_path / "tb"), 100, {"figure": str(png)})
    (event,) = [e for e in read_events(str(tmp_path / "tb")) if e.summary.value]
    (value,) = event.summary.value
    assert (event.step, value.tag, value.image.height, value.image.width) == (100, "figure", 30, 50)
    decoded = np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(decoded, pixels)


def test_bad_image_names_the_tag(tmp_path):
    with TensorBoardLog(str(tmp_path)) as tb, pytest.raises(ValueError, match="images\\['bad'\\] must be uint8"):
        tb.images(0, {"bad": np.zeros((4, 4, 3), np.float32)})


def test_only_process_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    png, run = tmp_path / "figure.png", tmp_path / "run"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png)
    with MetricsLog(str(run / "arm" / "metrics.jsonl")) as log:
        log.write(1, {"loss": 1.0})
    log_figures(str(run), 1, {"figure": str(png)})
    assert not run.exists()


def test_tensorboard_off_writes_jsonl_only(tmp_path):
    with MetricsLog(str(tmp_path / "metrics.jsonl"), tensorboard=False) as log:
        log.write(1, {"loss": 1.0})
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_flushed_before_close_and_one_file_per_log(tmp_path):
    """A killed run keeps what it logged; a resumed run (a second log on the same dir) clobbers nothing."""
    first, second = MetricsLog(str(tmp_path / "metrics.jsonl")), MetricsLog(str(tmp_path / "metrics.jsonl"))
    first.write(1, {"loss": 2.0})
    second.write(2, {"loss": 1.0})
    assert len(metrics_log.event_files(str(tmp_path))) == 2
    assert sorted(read_scalars(str(tmp_path))["loss"]) == [(1, 2.0), (2, 1.0)]
    first.close()
    second.close()


def test_truncated_tail_is_dropped_and_corruption_is_refused(tmp_path):
    with MetricsLog(str(tmp_path / "metrics.jsonl")) as log:
        for step, metrics in ROWS:
            log.write(step, metrics)
    (path,) = metrics_log.event_files(str(tmp_path))
    data = open(path, "rb").read()
    cut = tmp_path / "cut" / "events.out.tfevents.cut"
    cut.parent.mkdir()
    cut.write_bytes(data[:-3])
    assert [e.step for e in read_events(str(cut))] == [0, 10]
    bad = bytearray(data)
    bad[-6] ^= 0xFF  # inside the last payload
    cut.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="corrupt record"):
        read_events(str(cut))


def test_tensorboard_reader_loads_the_scalars(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    with MetricsLog(str(tmp_path / "metrics.jsonl")) as log:
        for step, metrics in ROWS:
            log.write(step, metrics)
    acc = accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("loss")] == [(10, 1.25), (20, 0.75)]


def test_jsonl_is_plain_json(tmp_path):
    with MetricsLog(str(tmp_path / "m.jsonl"), tensorboard=False) as log:
        log.write(3, {"v": jnp.ones((2,))})
    assert json.loads((tmp_path / "m.jsonl").read_text()) == {"step": 3, "v": [1.0, 1.0]}
