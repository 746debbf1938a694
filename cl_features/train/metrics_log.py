"""Metrics as JSON lines and TensorBoard event files in the workdir, plus a progress line on stdout.

Only process 0 writes. TensorBoard files come from tensorboardX (no TensorFlow): `MetricsLog` puts the scalars
of each logged row next to its JSONL file, `log_figures` puts PNG figures as images into a directory, so
`tensorboard --logdir=WORKDIR` shows one run per arm plus the figures at the top level.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time

import jax
import numpy as np


def _plain(v):
    if isinstance(v, (np.ndarray, jax.Array)):
        v = np.asarray(v)
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _is_scalar(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


class TensorBoardLog:
    """Scalars and images in a TensorBoard event file under `logdir` (process 0 only; None writes nothing).

    Written synchronously with tensorboardX's protobufs and record writer (no background thread): the file is
    created on the first write and flushed after every write, so a killed run keeps what it logged. Each
    instance writes its own file (pid and a counter in the name), so a resumed run adds a file next to the old
    ones. Use close() (or `with`) when done.
    """

    _count = 0

    def __init__(self, logdir: str | None):
        self.logdir = logdir if jax.process_index() == 0 else None
        self._writer = None

    def _write(self, step: int, summary) -> None:
        from tensorboardX.event_file_writer import EventsWriter  # imported on first write: a second or two
        from tensorboardX.proto import event_pb2

        if self._writer is None:
            os.makedirs(self.logdir, exist_ok=True)
            TensorBoardLog._count += 1
            self._writer = EventsWriter(
                os.path.join(self.logdir, "events"), filename_suffix=f".{os.getpid()}.{TensorBoardLog._count}"
            )
        self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        self._writer.flush()

    def scalars(self, step: int, metrics: dict) -> None:
        """Writes every real-valued scalar of `metrics` (tag = key) at `step`; other values are skipped."""
        if not self.logdir:
            return
        from tensorboardX import summary as tbx_summary

        values = {k: _plain(v) for k, v in metrics.items()}
        values = {k: float(v) for k, v in values.items() if _is_scalar(v)}
        if values:  # simple_value protos, as tensorboardX's summary.scalar writes them (NaN kept)
            self._write(
                step,
                tbx_summary.Summary(
                    value=[tbx_summary.Summary.Value(tag=k, simple_value=x) for k, x in values.items()]
                ),
            )

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """Writes images: {tag: uint8 [H, W, 1 | 3 | 4] or [H, W]} at `step`."""
        if not self.logdir:
            return
        from tensorboardX import summary as tbx_summary

        values = []
        for tag, img in images.items():
            img = np.asarray(img)
            if img.ndim == 2:
                img = img[..., None]
            if img.ndim != 3 or img.shape[-1] not in (1, 3, 4) or img.dtype != np.uint8:
                raise ValueError(f"images[{tag!r}] must be uint8 [H, W, 1|3|4], got {img.dtype} {img.shape}")
            values += tbx_summary.image(tag, img, dataformats="HWC").value
        if values:
            self._write(step, tbx_summary.Summary(value=values))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_png(path: str) -> np.ndarray:
    """A PNG file -> uint8 [H, W, 3]."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def log_figures(logdir: str | None, step: int, paths: dict[str, str]) -> None:
    """Writes the PNG files {tag: path} as TensorBoard images under `logdir` at `step` (process 0 only)."""
    with TensorBoardLog(logdir) as tb:
        if tb.logdir:
            tb.images(step, {tag: read_png(p) for tag, p in paths.items()})


class MetricsLog:
    """Appends {"step": s, **metrics} lines to `path` (JSONL) and the scalars to TensorBoard event files.

    The event files go into `tensorboard_dir` (default: the directory of `path`; tensorboard=False: none).
    path=None, or a process other than 0, writes nothing.
    """

    def __init__(self, path: str | None, *, tensorboard: bool = True, tensorboard_dir: str | None = None):
        self.path = path if jax.process_index() == 0 else None
        if self.path:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tb_dir = (tensorboard_dir or os.path.dirname(self.path) or ".") if self.path and tensorboard else None
        self.tensorboard = TensorBoardLog(tb_dir)

    def write(self, step: int, metrics: dict) -> None:
        if not self.path:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.tensorboard.scalars(step, metrics)

    def close(self) -> None:
        self.tensorboard.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_jsonl(path: str, step: int) -> int:
    """Keeps the complete rows of a JSON-lines log with row['step'] <= step (drops a torn last line).

    Atomic (write + rename). Returns the number of rows kept; a missing file keeps 0.
    """
    if not os.path.exists(path):
        return 0
    kept = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn by a kill mid-write
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if row.get("step", 0) <= step:
                kept.append(line)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)
    return len(kept)


def event_files(logdir: str) -> list[str]:
    """The TensorBoard event files directly inside `logdir`, in name order."""
    return sorted(os.path.join(logdir, f) for f in os.listdir(logdir) if ".tfevents." in f)


def read_events(path: str) -> list:
    """Every Event proto in an event file, or in all event files directly inside a directory.

    Reads the TFRecord framing (length, masked CRC32C of the length, payload, masked CRC32C of the payload)
    and checks both CRCs: a corrupt record raises ValueError; a truncated last record (a run killed while
    writing) ends the file quietly. No TensorFlow or TensorBoard needed.
    """
    import struct

    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    files = event_files(path) if os.path.isdir(path) else [path]
    events = []
    for name in files:
        with open(name, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            header, (header_crc,) = data[pos : pos + 8], struct.unpack("<I", data[pos + 8 : pos + 12])
            (length,) = struct.unpack("<Q", header)
            end = pos + 12 + length + 4
            if end > len(data):
                break
            payload = data[pos + 12 : pos + 12 + length]
            (payload_crc,) = struct.unpack("<I", data[end - 4 : end])
            if masked_crc32c(header) != header_crc or masked_crc32c(payload) != payload_crc:
                raise ValueError(f"corrupt record at byte {pos} of {name}")
            events.append(event_pb2.Event.FromString(payload))
            pos = end
    return events


def read_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the scalar summaries in read_events(path), in file order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for event in read_events(path):
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
    return out


class Progress:
    """Prints `[name] step s/N  loss ...  steps/s  ETA` lines (process 0 only)."""

    def __init__(self, name: str, total_steps: int, start_step: int = 0, stream=sys.stdout):
        self.name, self.total, self.stream = name, total_steps, stream
        self.t0, self.s0 = time.perf_counter(), start_step
        self.enabled = jax.process_index() == 0

    def rate(self, step: int) -> float:
        dt = time.perf_counter() - self.t0
        return (step - self.s0) / dt if dt > 0 else math.nan

    def update(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else math.nan
        shown = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items() if np.ndim(v) == 0)
        print(
            f"[{self.name}] step {step}/{self.total}  {shown}  {rate:.1f} steps/s  ETA {eta:.0f}s",
            file=self.stream,
            flush=True,
        )
