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

from cl_features import workdir

_file_count = itertools.count(1)  # tells apart the event files one process opens in one second


def _plain(v):  # numpy / jax values -> Python numbers and lists; NaN and +-inf (not JSON) -> None
    v = np.asarray(v).tolist() if isinstance(v, (np.ndarray, jax.Array, np.generic)) else v
    return (
        [_plain(x) for x in v] if isinstance(v, list) else None if isinstance(v, float) and not math.isfinite(v) else v
    )


class _RemoteEvents:
    """tensorboardX's writer for remote event files, through the workdir's path layer (its own gs:// writer needs
    TensorFlow); the object is written when the writer closes."""

    def __init__(self, path: str | None = None):  # without a path: the factory tensorboardX calls `open` on
        self._file = workdir.path(path).open("wb") if path else None

    def open(self, path: str) -> _RemoteEvents:
        return _RemoteEvents(path)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


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
        with workdir.path(path).open("rb") as f, Image.open(f) as im:
            values += summary.image(tag, np.asarray(im.convert("RGB")), dataformats="HWC").value
    _write(_open_events(logdir), step, values).close()


class MetricsLog(contextlib.AbstractContextManager):  # `with` closes it
    """Appends {"step": s, **metrics} lines to `path` (strict JSONL: a non-finite value is null) and the finite
    scalars to a TensorBoard event file in the same directory (tensorboard=False: none). path=None, or a process
    other than 0, writes nothing."""

    def __init__(self, path: str | None, *, tensorboard: bool = True):
        self.path = path if jax.process_index() == 0 else None
        if self.path:
            workdir.path(os.path.dirname(self.path) or ".").mkdir(parents=True, exist_ok=True)
        self._tensorboard, self._writer = bool(self.path and tensorboard), None
        self._rows = workdir.Appender(self.path) if self.path else None

    def write(self, step: int, metrics: dict, *, tensorboard_only: dict | None = None) -> None:
        """tensorboard_only: scalars for the event file alone (timings, which would make the JSONL differ between
        an interrupted and an uninterrupted run)."""
        if not self.path:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._rows.write(json.dumps(row, allow_nan=False) + "\n")
        row.update({k: _plain(v) for k, v in (tensorboard_only or {}).items()})
        scalars = [k for k, v in row.items() if isinstance(v, numbers.Real) and not isinstance(v, bool) and k != "step"]
        if self._tensorboard and scalars:
            from tensorboardX.proto.summary_pb2 import Summary

            self._writer = self._writer or _open_events(os.path.dirname(self.path) or ".")
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
    """Keeps the rows with row['step'] <= step of a JSON-lines log, up to a torn last line (a kill mid-write);
    atomic (write + rename). Returns the number of rows kept (0 for a missing file)."""
    if not workdir.path(path).exists():
        return 0
    lines = workdir.path(path).read_text().splitlines(keepends=True)
    whole = list(itertools.takewhile(lambda line: line.endswith("\n"), lines))
    kept = [line for line in whole if json.loads(line).get("step", 0) <= step]
    workdir.write_text(path, "".join(kept))
    return len(kept)


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 2h07m; '--' for None (not known yet)."""
    if seconds is None or not math.isfinite(seconds):
        return "--"
    s = round(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Prints `[name] step s/N  loss ...  R steps/s  ETA 3m05s` lines (process 0 only; quiet: none).

    The rate counts from the end of the first call (`first_call_done`), so the compilation stays out of it; until
    a step after that is timed, the ETA shows as '--'. part=(k, K): this is part k (from 0) of K parts of one run
    with the same number of steps each (the arms of a synthetic run); the line then adds the ETA of the whole run:
    this part's steps left plus the K-1-k later parts at this rate, each with this part's compilation time.
    `update` returns {"steps_per_second": ...} over the steps since the previous update (none on the first).
    clock: seconds (the tests pass a fake one).
    """

    def __init__(self, name, total_steps, start_step=0, *, part=(0, 1), quiet=False, clock=time.perf_counter):
        self.name, self.total, self.s0, self.part, self.quiet = name, total_steps, start_step, part, quiet
        self.clock = clock
        self.t0, self.first, self.last = clock(), None, None  # first, last: (time, step)

    def first_call_done(self, step: int) -> None:
        self.first = self.last = (self.clock(), step)

    def leave_out(self, seconds: float) -> None:
        """Time not to count in the rate (the first measurement of a row, which compiles), added to the
        compilation time of the later parts."""
        if self.first is not None:
            self.first, self.last = (self.first[0] + seconds, self.first[1]), (self.last[0] + seconds, self.last[1])

    def update(self, step: int, metrics: dict) -> dict:
        now = self.clock()
        first, last, self.last = self.first, self.last, (now, step)
        rate = (step - first[1]) / max(now - first[0], 1e-9) if first and step > first[1] else None
        eta = (self.total - step) / rate if rate else None
        shown = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items() if np.ndim(v) == 0)
        line = f"[{self.name}] step {step}/{self.total}  {shown}  {f'{rate:.1f}' if rate else '--'} steps/s"
        line += f"  ETA {duration(eta)}"
        k, parts = self.part
        if parts > 1:
            compile_s = max(first[0] - self.t0 - (first[1] - self.s0) / rate, 0.0) if rate else 0.0
            whole = eta + (parts - 1 - k) * (self.total / rate + compile_s) if rate else None
            line += f"  run ETA {duration(whole)} ({k + 1} of {parts})"
        if not self.quiet and jax.process_index() == 0:
            print(line, flush=True)
        return {"steps_per_second": (step - last[1]) / max(now - last[0], 1e-9)} if last and step > last[1] else {}
