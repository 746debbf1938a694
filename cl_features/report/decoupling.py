"""The feature-decoupling report folder (docs/decoupling.md lists its files): tables (markdown + JSON), figures (PNG).

Inputs are the plain dicts the measurements return:
  model_free  {set_name: cl_features.measure.model_free.view_table(...)}
  models      {model_name: {'train_set': str, 'scores': {name: float}, 'layers': representation.layer_table(...)}}
`write_report` keeps what the figures are drawn from (pictures.npz, report_inputs.json), so `redraw(outdir)`
rewrites the folder without measuring.
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


def model_free_markdown(model_free: Mapping[str, Mapping]) -> str:
    """One row per augmentation set: each statistic's mean cross-view correlation, the dense and sparse means
    [95% bootstrap interval] and their ratio per dictionary; with several seeds, their sd across seeds."""
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
    seeds = any("seeds" in m for m in models.values())
    scores = _table(
        ["model", "trained with", *(["seeds"] if seeds else []), *score_cols],
        [
            [name, m["train_set"], *([len(m.get("seeds", ()))] if seeds else [])]
            + [_ci(m["scores"].get(c), m.get("scores_ci", {}).get(c)) for c in score_cols]
            for name, m in models.items()
        ],
    )
    layer_cols = ["channels", "density", "dense_units", "dead_units"]
    corr_cols = sorted({c for m in models.values() for row in m["layers"].values() for c in row if c[:5] == "corr/"})
    rows = [
        [name, layer, *(row.get(c) for c in layer_cols + corr_cols)]
        for name, m in models.items()
        for layer, row in m["layers"].items()
    ]
    layers = _table(["model", "layer", *layer_cols, *(c.replace("corr/", "channel corr ") for c in corr_cols)], rows)
    over_seeds = " (mean over seeds [95% t-interval across seeds])" if seeds else ""
    return f"Scores{over_seeds}:\n\n{scores}\nPer layer:\n\n{layers}"


def _errors(vals, cis) -> np.ndarray:
    """[2, n] error bar lengths below and above each value from its [low, high] interval (0 where none)."""
    return np.array([[v - c[0], c[1] - v] if c else [0.0, 0.0] for v, c in zip(vals, cis)]).T.clip(0)


def model_free_figure(model_free: Mapping[str, Mapping], path: str) -> Figure:
    """Grouped bars: per augmentation set, each dense statistic's and each dictionary's sparse mean correlation."""
    sets, ts = list(model_free), list(model_free.values())
    series = [  # (label, values, intervals, colour)
        (s, [t["stats"][s]["corr_mean"] for t in ts], [t["stats"][s].get("corr_mean_ci") for t in ts], c)
        for s, c in zip(DENSE_STATS, ("tab:red", "tab:orange", "tab:brown"))
    ]
    series += [
        (f"sparse ({k})", [t["sparse_mean"][k] for t in ts], [t.get("sparse_mean_ci", {}).get(k) for t in ts], c)
        for k, c in zip(_kinds(model_free), ("tab:blue", "tab:cyan"))
    ]
    x = np.arange(len(sets))
    w = 0.8 / len(series)
    fig = Figure(figsize=(1.7 * len(sets) + 3.5, 3.8))
    ax = fig.subplots()
    for i, (label, vals, cis, color) in enumerate(series):
        err = _errors(vals, cis)
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
    err = _errors(vals, [models[n].get("scores_ci", {}).get(key) for n in names])
    ax.bar(np.arange(len(names)), vals, color=color, yerr=err if np.any(err) else None, capsize=3)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    low = np.nanmin(vals - err[0]) if np.isfinite(vals).any() else 0
    ax.set(ylabel=ylabel, ylim=(min(0, low - 0.05), 1))
    ax.set_title(title, fontsize=10)


def representation_figure(models: Mapping[str, Mapping], path: str) -> Figure:
    """Four panels: density per layer, channel correlation per layer (last view set), dense reliance and kNN
    accuracy per model (error bars: 95% interval across seeds, where there are several)."""
    layer_names = [l for l in next(iter(models.values()))["layers"] if l != "features"]
    corr_keys = sorted({c for m in models.values() for c in m["layers"].get("features", {}) if c.startswith("corr/")})
    fig = Figure(figsize=(17, 4.0), layout="constrained")
    axes = fig.subplots(1, 4)
    for name, m in models.items():
        layers = m["layers"]
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
    """Writes the report folder and returns {artefact: path} of what it wrote."""
    workdir_lib.path(outdir, "figures").mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}

    def out(name: str, folder: str = "") -> str:  # the path of a file written, kept in `paths`
        paths[name] = os.path.join(outdir, folder, name)
        return paths[name]

    def dump(name: str, obj) -> None:
        jsonio.dump(obj, out(name), sort_keys=False)  # keep the tables' order

    sections = ["# Feature decoupling report\n"]
    if notes:
        sections.append("\n".join(f"- {n}" for n in notes) + "\n")
    mf_title = "Model-free: cross-view correlation per augmentation set"
    tables = (
        ("model_free", model_free, model_free_markdown, model_free_figure, mf_title),
        ("representation", models, representation_markdown, representation_figure, "Representations"),
    )
    for name, table, to_markdown, draw, title in tables:
        if not table:
            continue
        md = to_markdown(table)
        dump(f"{name}.json", table)
        workdir_lib.write_text(out(f"{name}.md"), md)
        draw(table, out(f"{name}.png", "figures"))
        sections += [f"## {title}\n", md, f"![{name.replace('_', '-')}](figures/{name}.png)\n"]
    if model_seeds:
        dump("representation_seeds.json", model_seeds)
    arrays = {}
    if tsne_maps:
        title = "t-SNE of the representation, coloured by class"
        tsne.figure(tsne_maps, tsne_labels, out("tsne.png", "figures"), class_names=class_names, title=title)
        sections.append("![t-SNE](figures/tsne.png)\n")
        arrays.update({f"tsne/{k}": np.asarray(v) for k, v in tsne_maps.items()})
        arrays["tsne_labels"] = np.asarray(tsne_labels)
    if vis:
        values = {n: m["vis_activation"] for n, m in (models or {}).items() if "vis_activation" in m}
        title = f"activation maximisation, layer {vis_layer} (number: mean activation reached)" if vis_layer else None
        feature_vis.grid_figure(
            vis, out("feature_vis.png", "figures"), channels=vis_channels, values=values or None, title=title
        )
        sections.append("![feature visualisation](figures/feature_vis.png)\n")
        arrays.update({f"vis/{k}": np.asarray(v) for k, v in vis.items()})
    if arrays:
        workdir_lib.savez(out("pictures.npz"), compressed=True, **arrays)
    if config is not None:
        dump("config.json", config)
    dump(
        "report_inputs.json",
        {
            "class_names": None if class_names is None else list(class_names),
            "vis_channels": None if vis_channels is None else [int(v) for v in vis_channels],
            "vis_layer": vis_layer,
            "notes": list(notes),
        },
    )
    summary = out("summary.md")
    sections.append("## Files\n\n" + "".join(f"- {os.path.relpath(p, outdir)}\n" for p in paths.values()))
    workdir_lib.write_text(summary, "\n".join(sections))
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
        vis=vis or None,
        config=load("config.json"),
        **inputs,  # class_names, vis_channels, vis_layer, notes
    )


def report(workdir: str, info: dict | None) -> Report:
    """A decoupling report folder redrawn from the inputs write_report kept there (cl_features.report.kinds)."""
    del info
    return Report(written=dict(redraw(workdir)))
