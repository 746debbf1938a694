"""Metrics as JSON lines and TensorBoard event files in the workdir, plus a progress line on stdout.

Only process 0 writes. Event files (tensorboardX, no TensorFlow) are written in this thread and flushed after
every event, so a killed run keeps what it logged; each writer has its own file, so a resumed run adds one.
`MetricsLog` puts each row's scalars next to its JSONL file, `log_figures` PNG figures as images.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import numbers
import os
import time

import jax
import numpy as np

_file_count = itertools.count(1)  # tells apart the event files one process opens in one second


def _plain(v):  # numpy / jax values -> Python numbers and lists; NaN and +-inf (not JSON) -> None
    v = np.asarray(v).tolist() if isinstance(v, (np.ndarray, jax.Array, np.generic)) else v
    return (
        [_plain(x) for x in v] if isinstance(v, list) else None if isinstance(v, float) and not math.isfinite(v) else v
    )


def _open_events(logdir: str):
    from tensorboardX.event_file_writer import EventsWriter  # imported on first use: a second or two

    os.makedirs(logdir, exist_ok=True)
    return EventsWriter(os.path.join(logdir, "events"), filename_suffix=f".{os.getpid()}.{next(_file_count)}")


def _write(writer, step: int, values: list):
    from tensorboardX.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=values)
    writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    writer.flush()
    return writer


def log_figures(logdir: str | None, step: int, paths: dict[str, str]) -> None:
    """Writes the PNG files {tag: path} as TensorBoard images under `logdir` at `step` (process 0 only)."""
    if not logdir or jax.process_index() != 0:
        return
    from PIL import Image
    from tensorboardX import summary

    values = []
    for tag, path in paths.items():
        with Image.open(path) as im:
            values += summary.image(tag, np.asarray(im.convert("RGB")), dataformats="HWC").value
    _write(_open_events(logdir), step, values).close()


class MetricsLog(contextlib.AbstractContextManager):  # `with` closes it
    """Appends {"step": s, **metrics} lines to `path` (strict JSONL: a non-finite value is null) and the finite
    scalars to a TensorBoard event file in the same directory (tensorboard=False: none). path=None, or a process
    other than 0, writes nothing."""

    def __init__(self, path: str | None, *, tensorboard: bool = True):
        self.path = path if jax.process_index() == 0 else None
        if self.path:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._tensorboard, self._writer = bool(self.path and tensorboard), None

    def write(self, step: int, metrics: dict) -> None:
        if not self.path:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
        scalars = [k for k, v in row.items() if isinstance(v, numbers.Real) and not isinstance(v, bool) and k != "step"]
        if self._tensorboard and scalars:
            from tensorboardX.proto.summary_pb2 import Summary

            self._writer = self._writer or _open_events(os.path.dirname(self.path) or ".")
            _write(self._writer, step, [Summary.Value(tag=k, simple_value=row[k]) for k in scalars])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __exit__(self, *exc) -> None:
        self.close()


def truncate_jsonl(path: str, step: int) -> int:
    """Keeps the rows with row['step'] <= step of a JSON-lines log, up to a torn last line (a kill mid-write);
    atomic (write + rename). Returns the number of rows kept (0 for a missing file)."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        whole = list(itertools.takewhile(lambda line: line.endswith("\n"), f))
    kept = [line for line in whole if json.loads(line).get("step", 0) <= step]
    with open(path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)
    return len(kept)


class Progress:
    """Prints `[name] step s/N  loss ...  steps/s  ETA` lines (process 0 only)."""

    def __init__(self, name: str, total_steps: int, start_step: int = 0):
        self.name, self.total, self.s0, self.t0 = name, total_steps, start_step, time.perf_counter()

    def update(self, step: int, metrics: dict) -> None:
        rate = (step - self.s0) / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else math.nan
        shown = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items() if np.ndim(v) == 0)
        if jax.process_index() == 0:
            print(f"[{self.name}] step {step}/{self.total}  {shown}  {rate:.1f} steps/s  ETA {eta:.0f}s", flush=True)
