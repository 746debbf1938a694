"""The decoupling study's run: images -> model-free tables -> encoders -> their measurements -> the report folder."""

from __future__ import annotations

import hashlib
import json
import pathlib
import time

import jax
import ml_collections
import numpy as np

import cl_features
from cl_features import jsonio
from cl_features import workdir as workdir_lib
from cl_features.config_checks import at_least, require, split_list
from cl_features.decoupling import encoders, measurements
from cl_features.decoupling.measurements import FIT_STREAM, MEASURE_STREAM
from cl_features.image_training import trainer
from cl_features.measure import seeds as seeds_lib
from cl_features.report import decoupling as report
from cl_features.report import run_info
from cl_features.train import resumable

MODEL_FREE_CACHE = "model_free_tables.json"  # in the workdir: a restarted study does not measure them again


def model_free_code() -> str:
    """sha256 of every source file of the package (reading, augmenting and measuring the images) and of jax's and
    numpy's versions: what else, beside the config, the model-free tables depend on."""
    h = hashlib.sha256(f"jax {jax.__version__} numpy {np.__version__}".encode())
    root = pathlib.Path(cl_features.__file__).parent
    for f in sorted(root.rglob("*.py")):
        h.update(f"{f.relative_to(root)}\n".encode() + f.read_bytes())
    return h.hexdigest()


def _cached_model_free(c: ml_collections.ConfigDict, workdir: str | None, tables: dict | None = None):
    """Writes `tables` to the workdir's cache (tables given), or reads them back if the fields they depend on
    (seed, data, model_free) and the code that measures them are those of now; None when there is nothing to read."""
    if not workdir or jax.process_index() != 0 and tables is not None:
        return None
    key = {"seed": c.seed, "data": c.data.to_dict(), "model_free": c.model_free.to_dict(), "code": model_free_code()}
    key = json.loads(json.dumps(key))
    path = workdir_lib.path(workdir, MODEL_FREE_CACHE)
    if tables is not None:
        jsonio.dump({"config": key, "tables": tables}, str(path), sort_keys=False)
        return tables
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    return stored["tables"] if stored.get("config") == key else None


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field before any compilation; returns a copy."""
    c = ml_collections.ConfigDict(config.to_dict())
    at_least(c, 0, "seed")
    measurements.check_fields(c)
    encoders.check_fields(c)
    require(
        c.model_free.enabled or c.models.source != "none" or c.models.include_init,
        "model_free.enabled",
        "True when models.source is 'none' (otherwise there is nothing to measure)",
        c.model_free.enabled,
    )
    return c


def run(config: ml_collections.ConfigDict, workdir: str | None, *, verbose: bool = True) -> dict:
    """Measures and writes the report into `workdir` (None: nothing written); returns the report's numbers."""
    t0 = time.perf_counter()
    c = validate(config)
    say = print if verbose and jax.process_index() == 0 else (lambda *a, **k: None)
    if c.models.include_init or c.models.source == "init":
        trainer.validate(encoders.study_image_config(c, c.models.image_config, c.seed))  # errors before writing
    checked = {}  # run directory -> what check_resume read there (train() does not read it again)
    if workdir:
        for _, ic, sub in encoders.trained_runs(c, workdir) if c.models.source == "train" else []:
            checked[sub] = resumable.check_resume(sub, ic.to_dict(), mutable_fields=trainer.RESUME_MUTABLE_FIELDS)
        run_info.write_run_info(workdir, c, kind="decoupling")  # process 0 only; refuses another kind's workdir
    d = c.data
    fit = measurements.load_images(c, d.fit_split, d.num_fit_images, FIT_STREAM)
    measured = measurements.load_images(c, d.measure_split, d.num_images, MEASURE_STREAM)
    say(
        f"data: {len(fit.labels)} fit images ({d.fit_split}), {len(measured.labels)} measured ({d.measure_split}), "
        f"{len(fit.class_names)} classes"
    )
    models = encoders.load_encoders(c, len(measured.class_names), workdir, verbose=verbose, checked=checked)
    kinds = split_list(c, "model_free.dictionaries")
    dictionaries = measurements.fit_dictionaries(
        c, fit, kinds + (["luminance"] if models and "luminance" not in kinds else [])
    )

    tables = None
    if c.model_free.enabled:
        tables = _cached_model_free(c, workdir)
        if tables is None:
            mf = {k: dictionaries[k] for k in kinds}
            tables = measurements.model_free_tables(c, measured, fit, mf, say)
            _cached_model_free(c, workdir, tables)
        else:
            say(f"model-free: the tables of {workdir}/{MODEL_FREE_CACHE} (measured with this config and code)")
        for name, t in tables.items():
            sparse = "  ".join(f"sparse/{k} {v:.3f}" for k, v in t["sparse_mean"].items())
            say(f"model-free {name:16s} dense {t['dense_mean']:.3f}  {sparse}")

    per_seed, maps, vis = {}, {}, {}
    statistics = measurements.image_statistics(c, measured, dictionaries["luminance"]) if models else None
    for i, enc in enumerate(models):
        entry, feats = measurements.measure_encoder(c, enc, fit, measured, statistics)
        first = enc.name not in per_seed  # the pictures: of each model's first seed
        if c.tsne.enabled and first:
            maps[enc.name] = measurements.tsne_map(c, feats)
            entry["scores"]["tsne_separation"] = measurements.tsne_lib.separation(maps[enc.name], measured.labels)
        if c.vis.enabled and first:
            res = measurements.visualise(c, enc)
            vis[enc.name] = res.images
            entry["vis_activation"] = res.activation.tolist()
            entry["vis_activation_init"] = res.activation_init.tolist()
        per_seed.setdefault(enc.name, []).append((enc.seed, entry))
        scores = "  ".join(f"{k} {v:.3f}" for k, v in entry["scores"].items())
        say(f"measured {i + 1}/{len(models)} {enc.name} seed {enc.seed}: {scores}")
    entries = {}
    for name, runs in per_seed.items():
        entries[name] = seeds_lib.across_seeds([e for _, e in runs], [s for s, _ in runs])
        for key in ("vis_activation", "vis_activation_init"):
            if key in runs[0][1]:
                entries[name][key] = runs[0][1][key]
    seed_entries = {f"{n}/seed{s}": e for n, runs in per_seed.items() for s, e in runs}

    out = {"model_free": tables, "models": entries or None, "seconds": round(time.perf_counter() - t0, 1)}
    if workdir and jax.process_index() == 0:
        source = d.source + (f" {d.name}" if d.source == "tfds" else "")
        notes = [
            f"data: {source}, {len(measured.labels)} measured images ({d.measure_split}) at {d.image_size}px, "
            f"{len(fit.labels)} fit images ({d.fit_split}); seed {c.seed}; {out['seconds']} s"
        ]
        if tables:
            m = c.model_free
            notes.append(
                f"model-free: {m.seeds} seed(s) from {c.seed}, {m.resamples} bootstrap resamples of the images"
            )
        if entries:
            notes.append(f"models: {c.models.seeds} seed(s) each from {c.seed}; pictures of the first seed")
        out["paths"] = report.write_report(
            workdir,
            model_free=tables,
            models=entries or None,
            model_seeds=seed_entries or None,
            tsne_maps=maps or None,
            tsne_labels=measured.labels,
            class_names=measured.class_names,
            vis=vis or None,
            vis_channels=list(range(c.vis.channels)),
            vis_layer=c.vis.layer,
            notes=notes,
        )
    return out
