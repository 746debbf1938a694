"""Phase diagrams of a sweep, from its sweep.json alone: heat maps over the two swept values, one panel per
(augmentation, objective), the mean over seeds as the colour and mean ± standard deviation written in each cell.

Writes phase_diagram.png (one row per metric in METRICS) and sweep.md (the same numbers as tables).
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from cl_features import jsonio
from cl_features import workdir as workdir_lib
from cl_features.report.kinds import Report

METRICS = {"recovered_fraction": (0.0, 1.0), "probe_accuracy": (0.5, 1.0)}  # metric -> colour range


def cells(sweep: dict, metric: str) -> dict:
    """{(arm, objective): (mean [ny, nx], std [ny, nx], diverged runs [ny, nx])} over the seeds of each point."""
    x, y = sweep["axes"]["x"], sweep["axes"]["y"]
    ys = y["values"] if y else [None]
    out = {}
    for p in sweep["panels"]:
        points = {}
        for r in sweep["runs"]:
            v = r["values"]
            if (v["arm"], v["objective.name"]) == (p["arm"], p["objective"]):
                at = (ys.index(v[y["field"]]) if y else 0, x["values"].index(v[x["field"]]))
                points.setdefault(at, []).append(r["results"])
        mean, std, diverged = (np.full((len(ys), len(x["values"])), np.nan) for _ in range(3))
        for (i, j), rows in points.items():
            vals = [r[metric] for r in rows]
            mean[i, j], std[i, j] = np.mean(vals), np.std(vals)
            diverged[i, j] = sum(r.get("diverged_at", 0) > 0 for r in rows)
        out[(p["arm"], p["objective"])] = (mean, std, diverged)
    return out


def _title(panel: tuple[str, str], sweep: dict, sep: str = " / ") -> str:
    """The augmentation, then the objective where the panels differ in it."""
    return panel[0] if len({p["objective"] for p in sweep["panels"]}) == 1 else f"{panel[0]}{sep}{panel[1]}"


def _figure(sweep: dict, path: str) -> Figure:
    """A column per panel (its name over the top row), a row per metric (the metric on the row's colour bar)."""
    x, y = sweep["axes"]["x"], sweep["axes"]["y"]
    panels = [(p["arm"], p["objective"]) for p in sweep["panels"]]
    nx, ny = len(x["values"]), len(y["values"]) if y else 1
    width, height = max(2.6, 0.8 * nx + 1.2), max(1.9, 0.6 * ny + 1.3)
    fig = Figure(figsize=(width * len(panels) + 1.2, height * len(METRICS) + 0.4), layout="constrained")
    axes = fig.subplots(len(METRICS), len(panels), squeeze=False)
    seeds = sweep["config"]["sweep"]["seeds"]
    for row, (metric, (lo, hi)) in enumerate(METRICS.items()):
        for col, panel in enumerate(panels):
            mean, std, diverged = cells(sweep, metric)[panel]
            ax = axes[row, col]
            im = ax.imshow(mean, vmin=lo, vmax=hi, cmap="viridis", aspect="auto", origin="lower")
            for i in range(ny):
                for j in range(nx):
                    mark = "*" if diverged[i, j] else ""
                    text = f"{mean[i, j]:.2f}{mark}\n±{std[i, j]:.2f}"
                    ax.text(
                        j, i, text, ha="center", va="center", fontsize=7, color="w" if mean[i, j] < 0.6 * hi else "k"
                    )
            ax.set_xticks(range(nx), [str(v) for v in x["values"]], fontsize=8)
            ax.set_yticks(range(ny), [str(v) for v in y["values"]] if y else [""], fontsize=8)
            ax.set_xlabel(x["field"], fontsize=8)
            if col == 0:
                ax.set_ylabel(y["field"] if y else "", fontsize=8)
            if row == 0:
                ax.set_title(_title(panel, sweep, "\n"), fontsize=9)
        bar = fig.colorbar(im, ax=list(axes[row]), fraction=0.05, pad=0.02)
        bar.set_label(metric, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"mean ± std over {seeds} seeds (* : a run stopped on a non-finite value)", fontsize=9)
    workdir_lib.savefig(fig, path, dpi=110)
    return fig


def markdown(sweep: dict) -> str:
    """One table per metric: a row per (panel, y value), a column per x value, cells mean ± std."""
    x, y = sweep["axes"]["x"], sweep["axes"]["y"]
    lines = []
    for metric in METRICS:
        head = ["panel"] + ([y["field"]] if y else []) + [f"{x['field']}={v}" for v in x["values"]]
        lines += [f"### {metric}", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for panel, (mean, std, _) in cells(sweep, metric).items():
            for i, yv in enumerate(y["values"] if y else [None]):
                row = [_title(panel, sweep)] + ([str(yv)] if y else [])
                lines.append("| " + " | ".join(row + [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean[i], std[i])]) + " |")
        lines.append("")
    return "\n".join(lines)


def write_figures(workdir: str) -> dict[str, str]:
    sweep = jsonio.load(os.path.join(workdir, "sweep.json"))
    paths = {
        "phase_diagram.png": os.path.join(workdir, "phase_diagram.png"),
        "sweep.md": os.path.join(workdir, "sweep.md"),
    }
    _figure(sweep, paths["phase_diagram.png"])
    workdir_lib.write_text(paths["sweep.md"], markdown(sweep))
    return paths


def report(workdir: str, info: dict | None) -> Report:
    """The kinds.REPORTS entry: a finished sweep's figures (an unfinished one has no sweep.json yet)."""
    if not workdir_lib.path(workdir, "sweep.json").exists():
        return Report(missing=[f"{workdir}/sweep.json: the sweep has not finished"])
    return Report(written=write_figures(workdir))
