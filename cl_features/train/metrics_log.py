"""Metrics as JSON lines in the workdir, plus a progress line on stdout. Only process 0 writes."""

from __future__ import annotations

import json
import math
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


class MetricsLog:
    """Appends {"step": s, **metrics} lines to `path` (JSONL)."""

    def __init__(self, path: str | None):
        self.path = path if jax.process_index() == 0 else None
        if self.path:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)

    def write(self, step: int, metrics: dict) -> None:
        if not self.path:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


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
        print(f"[{self.name}] step {step}/{self.total}  {shown}  {rate:.1f} steps/s  ETA {eta:.0f}s",
              file=self.stream, flush=True)
