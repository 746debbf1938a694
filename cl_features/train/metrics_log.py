"""Metrics as JSON lines and TensorBoard event files (tensorboardX, no TensorFlow); only process 0 writes."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import numbers
import os
import time
import types

import jax
import numpy as np

from cl_features import workdir

_file_count = itertools.count(1)  # one event file per writer (a resumed run adds one), even within a second


def _plain(v):  # numpy / jax values -> Python numbers and lists; NaN and +-inf (not JSON) -> None
    v = np.asarray(v).tolist() if isinstance(v, (np.ndarray, jax.Array, np.generic)) else v
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


class _RemoteEvents:
    """tensorboardX's factory for remote event files: the path layer (its own needs TensorFlow), no fileno to sync."""

    def open(self, path: str):
        f = workdir.path(path).open("wb")
        return types.SimpleNamespace(write=f.write, flush=f.flush, close=f.close)


def _open_events(logdir: str):
    from tensorboardX import record_writer
    from tensorboardX.event_file_writer import EventsWriter  # imported on first use: a second or two

    for scheme in workdir.SCHEMES:
        record_writer.register_writer_factory(scheme, _RemoteEvents())
    workdir.path(logdir).mkdir(parents=True, exist_ok=True)
    return EventsWriter(os.path.join(logdir, "events"), filename_suffix=f".{os.getpid()}.{next(_file_count)}")


def _write(writer, step: int, values: list):
    from tensorboardX.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=values)
    writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    writer.flush()  # a killed run keeps what it logged
    return writer


def log_figures(logdir: str | None, step: int, paths: dict[str, str]) -> None:
    """Writes the PNG files {tag: path} as TensorBoard images under `logdir` at `step` (process 0 only)."""
    if not logdir or jax.process_index() != 0:
        return
    from PIL import Image
    from tensorboardX import summary

    values = []
    for tag, path in paths.items():
        with workdir.path(path).open("rb") as f, Image.open(f) as im:
            values += summary.image(tag, np.asarray(im.convert("RGB")), dataformats="HWC").value
    _write(_open_events(logdir), step, values).close()


class MetricsLog(contextlib.AbstractContextManager):  # `with` closes it
    """Appends {"step": s, **metrics} lines to `path` (strict JSONL: non-finite -> null) and the finite scalars
    to an event file beside it (tensorboard=False: none). path=None, or a process other than 0, writes nothing."""

    def __init__(self, path: str | None, *, tensorboard: bool = True):
        self.path = path if jax.process_index() == 0 else None
        self._dir = os.path.dirname(self.path or "") or "."
        if self.path:
            workdir.path(self._dir).mkdir(parents=True, exist_ok=True)
        self._tensorboard, self._writer = bool(self.path and tensorboard), None
        self._rows = workdir.Appender(self.path) if self.path else None

    def write(self, step: int, metrics: dict, *, tensorboard_only: dict | None = None) -> None:
        """tensorboard_only: scalars for the event file alone (timings, which differ between runs)."""
        if not self.path:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._rows.write(json.dumps(row, allow_nan=False) + "\n")
        row.update({k: _plain(v) for k, v in (tensorboard_only or {}).items()})
        scalars = [k for k, v in row.items() if isinstance(v, numbers.Real) and not isinstance(v, bool) and k != "step"]
        if self._tensorboard and scalars:
            from tensorboardX.proto.summary_pb2 import Summary

            self._writer = self._writer or _open_events(self._dir)
            _write(self._writer, step, [Summary.Value(tag=k, simple_value=row[k]) for k in scalars])

    def flush(self) -> None:
        """Puts every row written so far into the file (remotely they may wait a few seconds)."""
        if self._rows is not None:
            self._rows.flush()

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __exit__(self, *exc) -> None:
        self.close()


def truncate_jsonl(path: str, step: int) -> int:
    """Keeps the rows with step <= `step` (up to a torn last line), atomically; returns how many (0: no file)."""
    if not workdir.path(path).exists():
        return 0
    lines = workdir.path(path).read_text().splitlines(keepends=True)
    whole = itertools.takewhile(lambda line: line.endswith("\n"), lines)
    kept = [line for line in whole if json.loads(line).get("step", 0) <= step]
    workdir.write_text(path, "".join(kept))
    return len(kept)
