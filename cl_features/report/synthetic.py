"""Tables and figures of a synthetic run, from its workdir alone (no recomputation of the training).

Reads summary.json, weights.npz and <arm>/metrics.jsonl; writes summary.md, recovery.png, cosines.png and
decoupling.png.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cl_features.measure import recovery  # noqa: E402
from cl_features.train.metrics_log import read_jsonl  # noqa: E402

COLUMNS = (
    "recovered_fraction",
    "final_loss",
    "span_share",
    "sparse_corr",
    "dense_corr",
    "probe_accuracy",
    "raw_probe_accuracy",
    "steps",
    "seconds",
)
FIGURES = ("recovery.png", "cosines.png", "decoupling.png")


def markdown_table(summary: dict) -> str:
    lines = ["| arm | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for arm, r in summary["arms"].items():
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in COLUMNS]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _recovery_figure(workdir: str, arms: list[str], path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for arm in arms:
        mpath = os.path.join(workdir, arm, "metrics.jsonl")
        if not os.path.exists(mpath):
            continue
        rows = read_jsonl(mpath)
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["recovered_fraction"] for r in rows], label=arm)
        axes[1].plot(steps, [r["contrastive_loss"] for r in rows], label=arm)
    axes[0].set(
        xlabel="step", ylabel="fraction of atoms with max |cos| >= threshold", title="Atom recovery", ylim=(-0.02, 1.02)
    )
    axes[1].set(xlabel="step", ylabel="contrastive loss", title="Training loss", yscale="log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cosine_figure(weights: dict, arms: list[str], path: str) -> None:
    dictionary = weights["dictionary"]
    fig, axes = plt.subplots(1, len(arms), figsize=(3.2 * len(arms), 3.6), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        cos = np.asarray(recovery.sorted_cosines(weights[f"w_{arm}"], dictionary))
        im = ax.imshow(cos, aspect="auto", vmin=0, vmax=1, cmap="magma", interpolation="nearest")
        ax.set(title=arm, xlabel="atom j", ylabel="neuron i (sorted)")
    fig.colorbar(im, ax=axes[0].tolist(), label="|cos(w_i, M_j)|")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _decoupling_figure(summary: dict, path: str) -> None:
    arms = list(summary["arms"])
    x = np.arange(len(arms))
    fig, ax = plt.subplots(figsize=(1.6 * len(arms) + 2, 3.6))
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(workdir: str) -> dict[str, str]:
    """(Re)writes summary.md and the figures from the workdir; returns {name: path}."""
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    arms = list(summary["arms"])
    out = {"summary.md": os.path.join(workdir, "summary.md")}
    with open(out["summary.md"], "w") as f:
        f.write(markdown_table(summary))
    out["recovery.png"] = os.path.join(workdir, "recovery.png")
    _recovery_figure(workdir, arms, out["recovery.png"])
    wpath = os.path.join(workdir, "weights.npz")
    if os.path.exists(wpath):
        with np.load(wpath) as weights:
            out["cosines.png"] = os.path.join(workdir, "cosines.png")
            _cosine_figure(dict(weights), arms, out["cosines.png"])
    out["decoupling.png"] = os.path.join(workdir, "decoupling.png")
    _decoupling_figure(summary, out["decoupling.png"])
    return out
