r"""Regenerates every figure and table of a run from its workdir, without recomputing the training.

    python -m experiments.report --workdir=runs/synthetic [--kind=synthetic]

The run's kind (the "kind" field of <workdir>/run_info.json; a workdir without one is read as "synthetic")
picks its report function in REPORTS. A finished synthetic run gets back summary.md (byte for byte) and
recovery.png, cosines.png, decoupling.png. An interrupted one, with only <arm>/metrics.jsonl so far, gets the
training curves (recovery.png) and progress.md (the last logged row per arm), and the command lists what is
missing and why.

Adding a kind: write `report(workdir, info) -> Report` (info: run_info.json as a dict, or None) and add one
line to REPORTS, as a function or as a "module:function" string imported only when that kind is reported.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable

from absl import app, flags

from cl_features.report import run_info

FLAGS = flags.FLAGS
DEFAULT_KIND = "synthetic"


@dataclasses.dataclass
class Report:
    """written: {name: path} of every file (re)written; missing: one line per output not drawn, and why."""

    written: dict[str, str] = dataclasses.field(default_factory=dict)
    missing: list[str] = dataclasses.field(default_factory=list)


def _arm_list(arms) -> list[str]:
    return [a.strip() for a in str(arms).split(",") if a.strip()]


def progress_table(workdir: str, arms: list[str], total_steps: int | None) -> str:
    """Markdown table of the last logged row of each arm's metrics.jsonl (arms without one are left out)."""
    from cl_features.train.metrics_log import read_jsonl

    cols = ("contrastive_loss", "recovered_fraction", "span_share", "instance_acc")
    lines = ["| arm | step | of | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for arm in arms:
        path = os.path.join(workdir, arm, "metrics.jsonl")
        rows = read_jsonl(path) if os.path.exists(path) else []
        if not rows:
            continue
        last = rows[-1]
        cells = [f"{last[k]:.3f}" if isinstance(last.get(k), float) else str(last.get(k, "")) for k in cols]
        lines.append(f"| {arm} | {last['step']} | {total_steps if total_steps else '?'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def synthetic(workdir: str, info: dict | None) -> Report:
    """The synthetic experiment's outputs (cl_features/report/synthetic.py) from summary.json, weights.npz and
    <arm>/metrics.jsonl; with no summary.json yet, the curves and progress.md from the metrics alone."""
    from cl_features.report import synthetic as figures

    config = (info or {}).get("config", {})
    summary_path = os.path.join(workdir, "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            arms = list(json.load(f)["arms"])
        report = Report(written=figures.write_report(workdir))
        if "cosines.png" not in report.written:
            report.missing.append("cosines.png: no weights.npz in the workdir")
    else:
        arms = (
            _arm_list(config["arms"])
            if "arms" in config
            else sorted(d for d in os.listdir(workdir) if os.path.exists(os.path.join(workdir, d, "metrics.jsonl")))
        )
        logged = [a for a in arms if os.path.exists(os.path.join(workdir, a, "metrics.jsonl"))]
        if not logged:
            raise ValueError(
                f"workdir {workdir!r} has neither summary.json nor any <arm>/metrics.jsonl: nothing to report"
            )
        report = Report()
        report.written["recovery.png"] = os.path.join(workdir, "recovery.png")
        figures._recovery_figure(workdir, logged, report.written["recovery.png"])
        report.written["progress.md"] = os.path.join(workdir, "progress.md")
        with open(report.written["progress.md"], "w") as f:
            f.write(progress_table(workdir, logged, config.get("train", {}).get("steps")))
        report.missing.append(
            "summary.json: the run has not finished, so summary.md, cosines.png and "
            "decoupling.png are not drawn (resume it with the same command and workdir)"
        )
    for arm in arms:
        if not os.path.exists(os.path.join(workdir, arm, "metrics.jsonl")):
            report.missing.append(f"{arm}/metrics.jsonl: arm {arm!r} has logged nothing yet")
    return report


# kind -> report(workdir, info) -> Report, or "module:function" imported on use.
def decoupling(workdir: str, info: dict | None) -> Report:
    """A decoupling report folder: redrawn from the inputs write_report kept there."""
    del info
    from cl_features.report import decoupling as decoupling_report

    return Report(written=dict(decoupling_report.redraw(workdir)), missing=[])


REPORTS: dict[str, Callable[[str, dict | None], Report] | str] = {"synthetic": synthetic, "decoupling": decoupling}


def _resolve(fn) -> Callable[[str, dict | None], Report]:
    if isinstance(fn, str):
        module, _, attr = fn.partition(":")
        return getattr(importlib.import_module(module), attr)
    return fn


def make_report(workdir: str, kind: str | None = None) -> Report:
    """Runs the report of `kind` (default: from run_info.json, else 'synthetic') on `workdir`."""
    if not workdir or not os.path.isdir(workdir):
        raise ValueError(f"workdir must be an existing directory, got {workdir!r}")
    info = run_info.read_run_info(workdir)
    kind = kind or (info or {}).get("kind") or DEFAULT_KIND
    if kind not in REPORTS:
        raise ValueError(f"kind must be one of {sorted(REPORTS)}, got {kind!r}")
    return _resolve(REPORTS[kind])(workdir, info)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        report = make_report(FLAGS.workdir, FLAGS.kind)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    for name, path in report.written.items():
        print(f"wrote {path}")
        if name.endswith(".md"):
            with open(path) as f:
                print(f.read(), end="")
    for line in report.missing:
        print(f"missing: {line}")


def define_flags() -> None:
    """The command's flags; defined only when run as a command, so importing this module defines none."""
    flags.DEFINE_string("workdir", None, "Workdir of a finished or interrupted run.", required=True)
    flags.DEFINE_string("kind", None, f"Report kind; default: run_info.json's 'kind', else {DEFAULT_KIND!r}.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
