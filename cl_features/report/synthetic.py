"""Tables and figures of a synthetic run, from its workdir alone (no recomputation of the training).

Reads summary.json, weights.npz and <arm>/metrics.jsonl; writes summary.md, recovery.png, cosines.png and
decoupling.png (`write_report`, a finished run), or recovery.png and progress.md from the metrics alone (`report`
on a run that has not finished).
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cl_features import jsonio
from cl_features import workdir as workdir_lib
from cl_features.jsonio import read_jsonl
from cl_features.measure import recovery
from cl_features.report.kinds import Report

COLUMNS = (
    "recovered_fraction",
    "final_loss",
    "span_share",
    "sparse_corr",
    "dense_corr",
    "probe_accuracy",
    "raw_probe_accuracy",
    "effective_rank",
    "steps",
    "seconds",
)


def arm_order(summary: dict) -> list[str]:
    """The arms of summary.json in the config's order (the file itself is written with sorted keys)."""
    listed = [a.strip() for a in str(summary.get("config", {}).get("arms", "")).split(",")]
    return [a for a in listed if a in summary["arms"]] + [a for a in summary["arms"] if a not in listed]


def markdown_table(summary: dict) -> str:
    lines = ["| arm | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for arm in arm_order(summary):
        r = summary["arms"][arm]
        cells = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in COLUMNS]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _recovery_figure(workdir: str, arms: list[str], path: str, threshold=None) -> Figure:
    """Recovered fraction and contrastive loss per logged step (markers: a single logged row still shows). The
    loss axis is logarithmic unless a loss is negative (then linear); a loss of exactly 0 is drawn at a floor a
    tenth of the smallest positive one, and the axis label says so."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    curves = {}
    for arm in arms:
        mpath = os.path.join(workdir, arm, "metrics.jsonl")
        if workdir_lib.path(mpath).exists():
            rows = read_jsonl(mpath)
            curves[arm] = ([r["step"] for r in rows], [r["recovered_fraction"] for r in rows])
            curves[arm] += ([r["contrastive_loss"] for r in rows],)
    losses = np.array([v for *_, loss in curves.values() for v in loss if v is not None], dtype=float)
    floor, loss_label = None, "contrastive loss (log scale)"
    if losses.size and losses.min() < 0:
        loss_label = "contrastive loss"
    elif losses.size and losses.min() == 0:
        floor = (losses[losses > 0].min() if (losses > 0).any() else 1.0) / 10
        loss_label = f"contrastive loss (log scale; 0 drawn at {floor:.2g})"
    for arm, (steps, recovered, loss) in curves.items():
        loss = [np.nan if v is None else max(v, floor) if floor else v for v in loss]
        axes[0].plot(steps, recovered, marker="o", ms=3, label=arm)
        axes[1].plot(steps, loss, marker="o", ms=3, label=arm)
    at = "threshold" if threshold is None else f"{threshold:g}"
    axes[0].set(xlabel="step", ylabel=f"fraction of atoms with max |cos| >= {at}", ylim=(-0.02, 1.02))
    axes[0].set_title("Atom recovery")
    axes[1].set(
        xlabel="step", ylabel=loss_label, title="Training loss", yscale="log" if "log" in loss_label else "linear"
    )
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    workdir_lib.savefig(fig, path, dpi=110)
    return fig


def _cosine_figure(weights: dict, arms: list[str], path: str) -> Figure:
    dictionary = weights["dictionary"]
    fig = Figure(figsize=(2.9 * len(arms) + 1.2, 3.6), layout="constrained")
    axes = fig.subplots(1, len(arms), squeeze=False, sharey=True)
    for ax, arm in zip(axes[0], arms):
        cos = np.asarray(recovery.sorted_cosines(weights[f"w_{arm}"], dictionary))
        im = ax.imshow(cos, aspect="auto", vmin=0, vmax=1, cmap="magma", interpolation="nearest")
        ax.set(title=arm, xlabel="atom j")
    axes[0, 0].set_ylabel("neuron i (sorted)")
    fig.colorbar(im, ax=axes[0].tolist(), label="|cos(w_i, M_j)|")
    workdir_lib.savefig(fig, path, dpi=110)
    return fig


def _decoupling_figure(summary: dict, path: str) -> Figure:
    arms = arm_order(summary)
    x = np.arange(len(arms))
    fig = Figure(figsize=(1.6 * len(arms) + 2, 3.6))
    ax = fig.subplots()
    for off, part, color in ((-0.2, "sparse", "tab:blue"), (0.2, "dense", "tab:red")):
        measured = [summary["arms"][a][f"{part}_corr"] for a in arms]
        predicted = [summary["arms"][a].get(f"{part}_corr_predicted", np.nan) for a in arms]
        ax.bar(x + off, measured, 0.38, color=color, label=f"{part} (measured)")
        ax.scatter(
            x + off, predicted, color="k", marker="_", s=300, zorder=3, label="predicted" if part == "sparse" else None
        )
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xticks(x, arms, rotation=15)
    ax.set(
        ylabel="cross-view correlation (mean over neurons)",
        title="Feature decoupling per augmentation",
        ylim=(-0.1, 1.1),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    workdir_lib.savefig(fig, path, dpi=110)
    return fig


def write_report(workdir: str) -> dict[str, str]:
    """(Re)writes summary.md and the figures from the workdir; returns {name: path}."""
    summary = jsonio.load(os.path.join(workdir, "summary.json"))
    arms = arm_order(summary)
    out = {"summary.md": os.path.join(workdir, "summary.md")}
    workdir_lib.write_text(out["summary.md"], markdown_table(summary))
    out["recovery.png"] = os.path.join(workdir, "recovery.png")
    _recovery_figure(workdir, arms, out["recovery.png"], _threshold(summary.get("config")))
    wpath = os.path.join(workdir, "weights.npz")
    if workdir_lib.path(wpath).exists():
        out["cosines.png"] = os.path.join(workdir, "cosines.png")
        _cosine_figure(workdir_lib.load_npz(wpath), arms, out["cosines.png"])
    out["decoupling.png"] = os.path.join(workdir, "decoupling.png")
    _decoupling_figure(summary, out["decoupling.png"])
    return out


def _threshold(config: dict | None):
    return (config or {}).get("measure", {}).get("threshold")


def progress_table(workdir: str, arms: list[str], total_steps: int | None) -> str:
    """Markdown table of the last logged row of each arm's metrics.jsonl (arms without one are left out)."""
    cols = ("contrastive_loss", "recovered_fraction", "span_share", "instance_acc")
    lines = ["| arm | step | of | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for arm in arms:
        path = os.path.join(workdir, arm, "metrics.jsonl")
        rows = read_jsonl(path) if workdir_lib.path(path).exists() else []
        if not rows:
            continue
        last = rows[-1]
        cells = [f"{last[k]:.3f}" if isinstance(last.get(k), float) else str(last.get(k, "")) for k in cols]
        lines.append(f"| {arm} | {last['step']} | {total_steps if total_steps else '?'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(workdir: str, info: dict | None) -> Report:
    """The run's outputs from summary.json, weights.npz and <arm>/metrics.jsonl; with no summary.json yet (the
    run has not finished), the curves and progress.md from the metrics alone. info: run_info.json or None."""
    config = (info or {}).get("config", {})
    metrics = lambda arm: workdir_lib.path(workdir, arm, "metrics.jsonl")  # noqa: E731
    summary_path = os.path.join(workdir, "summary.json")
    if workdir_lib.path(summary_path).exists():
        arms = list(jsonio.load(summary_path)["arms"])
        out = Report(written=write_report(workdir))
        if "cosines.png" not in out.written:
            out.missing.append("cosines.png: no weights.npz in the workdir")
    else:
        if "arms" in config:
            arms = [a.strip() for a in str(config["arms"]).split(",") if a.strip()]
        else:
            arms = sorted(d.name for d in workdir_lib.path(workdir).iterdir() if metrics(d.name).exists())
        logged = [a for a in arms if metrics(a).exists()]
        if not logged:
            raise ValueError(
                f"workdir {workdir!r} has neither summary.json nor any <arm>/metrics.jsonl: nothing to report"
            )
        out = Report()
        out.written["recovery.png"] = os.path.join(workdir, "recovery.png")
        _recovery_figure(workdir, logged, out.written["recovery.png"], _threshold(config))
        out.written["progress.md"] = os.path.join(workdir, "progress.md")
        workdir_lib.write_text(
            out.written["progress.md"], progress_table(workdir, logged, config.get("train", {}).get("steps"))
        )
        out.missing.append(
            "summary.json: the run has not finished, so summary.md, cosines.png and "
            "decoupling.png are not drawn (resume it with the same command and workdir)"
        )
    for arm in arms:
        if not metrics(arm).exists():
            out.missing.append(f"{arm}/metrics.jsonl: arm {arm!r} has logged nothing yet")
    return out
