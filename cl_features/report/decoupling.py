"""The feature-decoupling report: tables (markdown + JSON) and figures (PNG); what they show is in docs/decoupling.md.

Inputs are the plain dicts the measurements return:
  model_free  {set_name: cl_features.measure.model_free.view_table(...)}
  models      {model_name: {'train_set': str, 'scores': {name: float}, 'layers': representation.layer_table(...)}}
`write_report` lays out one folder:

  summary.md                 the notes, every table, links to the figures and the list of files
  model_free.json / .md      cross-view correlation of each dense and sparse statistic per augmentation set
  representation.json / .md  per model: scores (dense reliance, kNN, linear probe, t-SNE separation) and per
                             layer density and channel correlation: means over seeds, intervals across seeds
  representation_seeds.json  the same per model and seed
  figures/model_free.png, figures/representation.png, figures/tsne.png, figures/feature_vis.png
  pictures.npz, report_inputs.json   what the figures are drawn from; `redraw(outdir)` rewrites the folder
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from cl_features import jsonio
from cl_features import workdir as workdir_lib
from cl_features.measure import feature_vis, tsne
from cl_features.measure.image_stats import DENSE_STATS
from cl_features.measure.patch_codes import SPARSE_STATS
from cl_features.report.kinds import Report

SCORE_COLUMNS = (
    "dense_reliance",
    "reliance/mean_colour",
    "reliance/low_frequency_energy",
    "reliance/patch_codes_mean/luminance",
    "knn_acc",
    "linear_probe_acc",
    "tsne_separation",
)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _ci(v, ci) -> str:
    """'0.650 [0.635, 0.662]' (a number and its 95% interval), or the number alone."""
    if ci is None or v is None:
        return _fmt(v)
    return f"{_fmt(v)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _kinds(model_free: Mapping) -> list[str]:
    return list(next(iter(model_free.values()))["sparse_mean"]) if model_free else []


# --------------------------------------------------------------------------------------------------- tables


def model_free_markdown(model_free: Mapping[str, Mapping]) -> str:
    """One row per augmentation set: each statistic's mean cross-view correlation, the dense and sparse means
    (with their 95% bootstrap interval over images, where measured) and their ratio per dictionary; with several
    seeds, the dense and sparse means' standard deviation across seeds."""
    kinds = _kinds(model_free)
    multi = any(len(t.get("seeds", {}).get("seeds", ())) > 1 for t in model_free.values())
    header = ["augmentation", "images", *DENSE_STATS, "dense mean"]
    for k in kinds:
        header += [f"{s.replace('patch_codes_', 'codes ')} ({k})" for s in SPARSE_STATS]
        header += [f"sparse mean ({k})", f"dense / sparse ({k})"]
    if multi:
        header += ["sd over seeds: dense", *(f"sd over seeds: sparse ({k})" for k in kinds)]
    rows = []
    for name, t in model_free.items():
        ci = t.get("sparse_mean_ci", {})
        row = [name, t.get("num_images"), *(t["stats"][s]["corr_mean"] for s in DENSE_STATS)]
        row.append(_ci(t["dense_mean"], t.get("dense_mean_ci")))
        for k in kinds:
            row += [t["stats"][f"{s}/{k}"]["corr_mean"] for s in SPARSE_STATS]
            row += [_ci(t["sparse_mean"][k], ci.get(k)), t["ratio"][k]]
        if multi:
            sd = t.get("seeds", {}).get("sd", {})
            row += [sd.get("dense_mean"), *(sd.get(f"sparse_mean/{k}") for k in kinds)]
        rows.append(row)
    return _table(header, rows)


def representation_markdown(models: Mapping[str, Mapping]) -> str:
    """Two tables: per-model scores, then per-model, per-layer density and channel correlation."""
    if not models:
        return ""
    score_cols = [c for c in SCORE_COLUMNS if any(c in m["scores"] for m in models.values())]
    score_cols += sorted({c for m in models.values() for c in m["scores"]} - set(score_cols))

    def cell(m, c):
        return _ci(m["scores"].get(c), m.get("scores_ci", {}).get(c))

    seeds = any("seeds" in m for m in models.values())
    scores = _table(
        ["model", "trained with", *(["seeds"] if seeds else []), *score_cols],
        [
            [name, m["train_set"], *([len(m.get("seeds", ()))] if seeds else []), *(cell(m, c) for c in score_cols)]
            for name, m in models.items()
        ],
    )
    layer_cols = ["channels", "density", "dense_units", "dead_units"]
    corr_cols = sorted(
        {c for m in models.values() for row in m["layers"].values() for c in row if c.startswith("corr/")}
    )
    rows = []
    for name, m in models.items():
        for layer, row in m["layers"].items():
            rows.append([name, layer, *(row.get(c) for c in layer_cols + corr_cols)])
    layers = _table(["model", "layer", *layer_cols, *(c.replace("corr/", "channel corr ") for c in corr_cols)], rows)
    return (
        "Scores (dense_reliance: held-out ridge R^2 from the representation to the colour histogram; "
        "reliance/X: the same for statistic X"
        + ("; mean over seeds [95% t-interval across seeds]" if seeds else "")
        + "):\n\n"
        + scores
        + "\nPer layer (density: fraction of units "
        "firing, on clean images; channel corr S: mean over channels of the cross-view correlation of "
        "pooled activations, views from augmentation set S):\n\n" + layers
    )


# -------------------------------------------------------------------------------------------------- figures


def model_free_figure(model_free: Mapping[str, Mapping], path: str) -> Figure:
    """Grouped bars: per augmentation set, each dense statistic's and each dictionary's sparse mean correlation."""
    sets = list(model_free)
    kinds = _kinds(model_free)
    series = [
        (
            s,
            [model_free[a]["stats"][s]["corr_mean"] for a in sets],
            [model_free[a]["stats"][s].get("corr_mean_ci") for a in sets],
            c,
        )
        for s, c in zip(DENSE_STATS, ("tab:red", "tab:orange", "tab:brown"))
    ]
    series += [
        (
            f"sparse ({k})",
            [model_free[a]["sparse_mean"][k] for a in sets],
            [model_free[a].get("sparse_mean_ci", {}).get(k) for a in sets],
            c,
        )
        for k, c in zip(kinds, ("tab:blue", "tab:cyan"))
    ]
    x = np.arange(len(sets))
    w = 0.8 / len(series)
    fig = Figure(figsize=(1.7 * len(sets) + 3.5, 3.8))
    ax = fig.subplots()
    for i, (label, vals, cis, color) in enumerate(series):
        err = np.array([[v - c[0], c[1] - v] if c else [0.0, 0.0] for v, c in zip(vals, cis)]).T.clip(0)
        ax.bar(
            x - 0.4 + w * (i + 0.5), vals, w, label=label, color=color, yerr=err if np.any(err) else None, capsize=1.5
        )
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xticks(x, sets)
    ax.set(
        ylabel="cross-view correlation (mean over dims)",
        ylim=(min(-0.05, ax.get_ylim()[0]), 1.05),
        title="Model-free decoupling: dense (warm) vs sparse (blue) statistics (bars: 95% interval over images)",
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    workdir_lib.savefig(fig, path, dpi=110)
    return fig


def _bars(ax, models: Mapping[str, Mapping], key: str, color: str, title: str, ylabel: str) -> None:
    """One bar per model of scores[key], with its interval across seeds where there is one."""
    names = list(models)
    vals = np.array([models[n]["scores"].get(key, np.nan) for n in names], float)
    cis = [models[n].get("scores_ci", {}).get(key) for n in names]
    err = np.array([[v - c[0], c[1] - v] if c else [0.0, 0.0] for v, c in zip(vals, cis)]).T.clip(0)
    ax.bar(np.arange(len(names)), vals, color=color, yerr=err if np.any(err) else None, capsize=3)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    low = np.nanmin(vals - err[0]) if np.isfinite(vals).any() else 0
    ax.set(ylabel=ylabel, ylim=(min(0, low - 0.05), 1))
    ax.set_title(title, fontsize=10)


def representation_figure(models: Mapping[str, Mapping], path: str) -> Figure:
    """Four panels: density per layer, channel correlation per layer (last view set), dense reliance and kNN
    accuracy per model (error bars: 95% interval across seeds, where there are several)."""
    names = list(models)
    layer_names = [l for l in next(iter(models.values()))["layers"] if l != "features"]
    corr_keys = sorted({c for m in models.values() for c in m["layers"].get("features", {}) if c.startswith("corr/")})
    fig = Figure(figsize=(17, 4.0), layout="constrained")
    axes = fig.subplots(1, 4)
    for name in names:
        layers = models[name]["layers"]
        axes[0].plot(layer_names, [layers[l].get("density", np.nan) for l in layer_names], marker="o", label=name)
        if corr_keys:
            ks = layer_names + ["features"]
            axes[1].plot(ks, [layers[l].get(corr_keys[-1], np.nan) for l in ks], marker="o", label=name)
    axes[0].set(ylabel="fraction of units firing", ylim=(0, 1))
    axes[0].set_title("activation density (clean images)", fontsize=10)
    axes[1].set(ylabel="channel correlation (mean over channels)", ylim=(-0.05, 1.05))
    axes[1].set_title(f"cross-view correlation, {corr_keys[-1][5:] if corr_keys else '-'} views", fontsize=10)
    _bars(axes[2], models, "dense_reliance", "tab:red", "dense reliance: features -> colour histogram", "R^2")
    _bars(axes[3], models, "knn_acc", "tab:blue", "kNN accuracy (test images)", "accuracy")
    axes[0].legend(fontsize=7)
    for ax in axes[:2]:
        ax.tick_params(axis="x", labelsize=8)
    workdir_lib.savefig(fig, path, dpi=110)
    return fig


def _dump(obj, path: str) -> None:
    jsonio.dump(obj, path, sort_keys=False)  # keep the tables' order


def write_report(
    outdir: str,
    *,
    model_free: Mapping | None = None,
    models: Mapping | None = None,
    model_seeds: Mapping | None = None,
    tsne_maps: Mapping[str, np.ndarray] | None = None,
    tsne_labels=None,
    class_names: Sequence[str] | None = None,
    vis: Mapping[str, np.ndarray] | None = None,
    vis_channels: Sequence[int] | None = None,
    vis_layer: str | None = None,
    config: Mapping | None = None,
    notes: Sequence[str] = (),
) -> dict[str, str]:
    """Writes the report folder (see the module docstring) and returns {artefact: path} of what it wrote.

    Everything it is drawn from is kept (JSON tables, pictures.npz with the t-SNE maps and the visualisations,
    report_inputs.json with the rest), so `redraw(outdir)` makes the same folder again.
    """
    workdir_lib.path(outdir, "figures").mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    sections = ["# Feature decoupling report\n"]
    if notes:
        sections.append("\n".join(f"- {n}" for n in notes) + "\n")
    for name, table, to_markdown, figure, title in (
        (
            "model_free",
            model_free,
            model_free_markdown,
            model_free_figure,
            "Model-free: cross-view correlation per augmentation set",
        ),
        ("representation", models, representation_markdown, representation_figure, "Representations"),
    ):
        if not table:
            continue
        md = to_markdown(table)
        for ext in ("json", "md"):
            paths[f"{name}.{ext}"] = os.path.join(outdir, f"{name}.{ext}")
        paths[f"{name}.png"] = os.path.join(outdir, "figures", f"{name}.png")
        _dump(table, paths[f"{name}.json"])
        workdir_lib.write_text(paths[f"{name}.md"], md)
        figure(table, paths[f"{name}.png"])
        sections += [f"## {title}\n", md, f"![{name.replace('_', '-')}](figures/{name}.png)\n"]
    if model_seeds:
        paths["representation_seeds.json"] = os.path.join(outdir, "representation_seeds.json")
        _dump(model_seeds, paths["representation_seeds.json"])
    arrays = {}
    if tsne_maps:
        paths["tsne.png"] = os.path.join(outdir, "figures", "tsne.png")
        tsne.figure(
            tsne_maps,
            tsne_labels,
            paths["tsne.png"],
            class_names=class_names,
            title="t-SNE of the representation, coloured by class",
        )
        sections.append("![t-SNE](figures/tsne.png)\n")
        arrays.update({f"tsne/{k}": np.asarray(v) for k, v in tsne_maps.items()})
        arrays["tsne_labels"] = np.asarray(tsne_labels)
    if vis:
        paths["feature_vis.png"] = os.path.join(outdir, "figures", "feature_vis.png")
        values = {n: m["vis_activation"] for n, m in (models or {}).items() if "vis_activation" in m}
        feature_vis.grid_figure(
            vis,
            paths["feature_vis.png"],
            channels=vis_channels,
            values=values or None,
            title=(f"activation maximisation, layer {vis_layer} (number: mean activation reached)")
            if vis_layer
            else None,
        )
        sections.append("![feature visualisation](figures/feature_vis.png)\n")
        arrays.update({f"vis/{k}": np.asarray(v) for k, v in vis.items()})
    if arrays:
        paths["pictures.npz"] = os.path.join(outdir, "pictures.npz")
        workdir_lib.savez(paths["pictures.npz"], compressed=True, **arrays)
    if config is not None:
        paths["config.json"] = os.path.join(outdir, "config.json")
        _dump(config, paths["config.json"])
    paths["report_inputs.json"] = os.path.join(outdir, "report_inputs.json")
    _dump(
        {
            "class_names": None if class_names is None else list(class_names),
            "vis_channels": None if vis_channels is None else [int(v) for v in vis_channels],
            "vis_layer": vis_layer,
            "notes": list(notes),
        },
        paths["report_inputs.json"],
    )
    paths["summary.md"] = os.path.join(outdir, "summary.md")
    sections.append("## Files\n\n" + "".join(f"- {os.path.relpath(p, outdir)}\n" for p in paths.values()))
    workdir_lib.write_text(paths["summary.md"], "\n".join(sections))
    return paths


def redraw(outdir: str) -> dict[str, str]:
    """Rewrites the report folder `outdir` from what `write_report` kept there (no measurement)."""

    def load(name):
        path = os.path.join(outdir, name)
        return jsonio.load(path) if workdir_lib.path(path).exists() else None

    inputs = load("report_inputs.json")
    if inputs is None:
        raise FileNotFoundError(f"{outdir!r} has no report_inputs.json: not a report folder written by write_report")
    path = os.path.join(outdir, "pictures.npz")
    pictures = workdir_lib.load_npz(path) if workdir_lib.path(path).exists() else {}
    maps = {k[5:]: v for k, v in pictures.items() if k.startswith("tsne/")}
    vis = {k[4:]: v for k, v in pictures.items() if k.startswith("vis/")}
    return write_report(
        outdir,
        model_free=load("model_free.json"),
        models=load("representation.json"),
        model_seeds=load("representation_seeds.json"),
        tsne_maps=maps or None,
        tsne_labels=pictures.get("tsne_labels"),
        class_names=inputs["class_names"],
        vis=vis or None,
        vis_channels=inputs["vis_channels"],
        vis_layer=inputs["vis_layer"],
        config=load("config.json"),
        notes=inputs["notes"],
    )


def report(workdir: str, info: dict | None) -> Report:
    """A decoupling report folder redrawn from the inputs write_report kept there (cl_features.report.kinds)."""
    del info
    return Report(written=dict(redraw(workdir)))
