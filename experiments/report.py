r"""Regenerates every figure and table of a run from its workdir, without recomputing the training.

    python -m experiments.report --workdir=runs/synthetic [--kind=synthetic]

The run's kind (the "kind" field of <workdir>/run_info.json; a workdir without one is read as "synthetic")
picks its report in cl_features.report.kinds.REPORTS. A finished synthetic run gets back summary.md (byte for
byte) and recovery.png, cosines.png, decoupling.png. An interrupted one, with only <arm>/metrics.jsonl so far,
gets the training curves (recovery.png) and progress.md (the last logged row per arm), and the command lists
what is missing and why. An image run (kind "images") gets curves.png (losses and accuracies over the steps) and
summary.md; a sweep phase_diagram.png and sweep.md; a decoupling run its tables and figures.
"""

from __future__ import annotations

from absl import app, flags

from cl_features import workdir
from cl_features.report import kinds

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        report = kinds.make_report(FLAGS.workdir, FLAGS.kind)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    for name, path in report.written.items():
        print(f"wrote {path}")
        if name.endswith(".md"):
            print(workdir.path(path).read_text(), end="")
    for line in report.missing:
        print(f"missing: {line}")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of a finished or interrupted run.", required=True)
    flags.DEFINE_string("kind", None, f"Report kind; default: run_info.json's 'kind', else {kinds.DEFAULT_KIND!r}.")
    app.run(main)
