"""Curves and table of an image run (kind "images"), from its workdir alone: metrics.jsonl and summary.json.

curves.png: every logged loss (keys "loss" and "*_loss") and accuracy ("*_acc": the held-out ones, kNN, online
probe or test and the linear probe, apart from the training-batch ones) over the steps, with chance (1 /
num_classes) when summary.json gives it. summary.md: summary.json's scores, at init and at the end. A run that has
not finished gets the curves logged so far.
"""

from __future__ import annotations

import os

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cl_features import jsonio
from cl_features import workdir as workdir_lib
from cl_features.jsonio import read_jsonl
from cl_features.report.kinds import Report

HELD_OUT = ("knn_acc", "linear_probe_acc", "online_probe_acc", "test_acc")  # the other "*_acc": training batches
ROWS = HELD_OUT + ("final_loss",)
RUN = ("task", "steps", "num_train", "num_test", "num_classes", "learning_rate", "images_per_second", "seconds")


def panels(rows: list[dict]) -> dict[str, list[str]]:
    """{panel title: metric keys logged in `rows`}, in the order first logged."""
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, int | float) and k != "step"))
    accs = [k for k in keys if k.endswith("_acc")]
    return {
        "Training loss": [k for k in keys if k == "loss" or k.endswith("_loss")],
        "Held-out accuracy": [k for k in accs if k in HELD_OUT],
        "Training-batch accuracy": [k for k in accs if k not in HELD_OUT],
    }


def curves(rows: list[dict], path: str, num_classes: int | None = None) -> Figure:
    shown = {t: ks for t, ks in panels(rows).items() if ks}
    fig = Figure(figsize=(4.4 * max(len(shown), 1), 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(shown), 1), squeeze=False)[0]
    for ax, (title, keys) in zip(axes, shown.items()):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), int | float)]
            ax.plot(*zip(*pts), marker="o", ms=4, label=k)
        ax.set(title=title, xlabel="step", ylabel="loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title.endswith("accuracy"):
            ax.set(ylabel="accuracy", ylim=(-0.02, 1.02))
            if num_classes and title.startswith("Held-out"):
                ax.axhline(1 / num_classes, color="gray", ls=":", lw=1, label=f"chance (1/{num_classes})")
        ax.legend(fontsize=8)
    workdir_lib.savefig(fig, path, dpi=110)
    return fig


def markdown(summary: dict) -> str:
    lines = ["| score | at init | final |", "|---|---|---|"]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "" if v is None else str(v)  # noqa: E731
    for k in ROWS:
        if k in summary:
            lines.append(f"| {k} | {fmt(summary.get(f'{k}_init'))} | {fmt(summary[k])} |")
    lines += ["", "| run | |", "|---|---|"] + [f"| {k} | {fmt(summary[k])} |" for k in RUN if k in summary]
    return "\n".join(lines) + "\n"


def report(workdir: str, info: dict | None) -> Report:
    """The kinds.REPORTS entry of kind "images"."""
    mpath, spath = os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "summary.json")
    has_metrics, has_summary = workdir_lib.path(mpath).exists(), workdir_lib.path(spath).exists()
    if not has_metrics and not has_summary:
        raise ValueError(f"workdir {workdir!r} has neither summary.json nor metrics.jsonl: nothing to report")
    summary = jsonio.load(spath) if has_summary else {}
    out = Report()
    rows = read_jsonl(mpath) if has_metrics else []
    if rows:
        out.written["curves.png"] = os.path.join(workdir, "curves.png")
        curves(rows, out.written["curves.png"], summary.get("num_classes"))
    else:
        out.missing.append("curves.png: metrics.jsonl holds no rows")
    if summary:
        out.written["summary.md"] = os.path.join(workdir, "summary.md")
        workdir_lib.write_text(out.written["summary.md"], markdown(summary))
    else:
        out.missing.append(
            "summary.json: the run has not finished, so summary.md is not written (resume it with the same "
            "command and workdir)"
        )
    return out
