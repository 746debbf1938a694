"""The synthetic experiment's run: one network per augmentation arm, trained, measured, written to the workdir.

`run(config, workdir)` writes <arm>/metrics.jsonl, <arm>/checkpoints and <arm>/results.json per arm, then
summary.json and weights.npz, and draws the report (cl_features.report.synthetic: summary.md and figures).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cl_features import jsonio
from cl_features import workdir as workdir_lib
from cl_features.augment import vectors
from cl_features.config_checks import split_list
from cl_features.report import run_info
from cl_features.synthetic import results, task
from cl_features.train import config_guard, loop, resumable
from cl_features.train import mesh as mesh_lib
from cl_features.train.distributed import log_once
from cl_features.train.metrics_log import log_figures

# Config fields a resumed arm may change: frequencies, the number of steps and devices (checkpoint module), the
# other arms and the final measurements.
RESUME_MUTABLE_FIELDS = config_guard.MUTABLE_FIELDS + ("arms", "measure")


def arm_names(c: ml_collections.ConfigDict) -> list[str]:
    return split_list(c, "arms", vectors.AUGMENTATIONS)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field before any compilation; returns the resolved config."""
    c = task.resolve(config)
    arm_names(c)
    task.check_fields(c)
    results.check_fields(c)
    resumable.check_fields(c)
    return c


def arm_run_config(c: ml_collections.ConfigDict, arm: str) -> dict:
    """What an arm's checkpoints record and resuming checks: the resolved config and the arm."""
    return dict(c.to_dict(), arm=arm)


def finished_results(path: str, record: dict, steps: int, mutable_fields: tuple) -> dict | list | None:
    """The results saved at `path` by a run of config `record` that reached `steps`, or None."""
    try:
        saved = jsonio.load(path)
    except (OSError, json.JSONDecodeError):
        return None
    done = saved.get("results")
    saved_steps = saved.get("steps", done.get("steps") if isinstance(done, dict) else None)
    same = not config_guard.config_diff(saved.get("config", {}), record, mutable_fields)
    return done if same and done and saved_steps == steps else None


def train_arm(
    c: ml_collections.ConfigDict,
    arm: str,
    dictionary: jax.Array,
    *,
    mesh,
    workdir: str | None,
    verbose: bool = True,
    part: tuple[int, int] = (0, 1),
    checked: tuple[int, dict] | None = None,
) -> tuple[dict, np.ndarray, list[dict]]:
    """Trains one arm; returns (results, final weights [m, d1], history logged by this call).

    With a workdir, the arm checkpoints into <workdir>/<arm>/checkpoints and resumes from the newest one there
    (the metrics log is cut back to that step); an arm whose final checkpoint and results.json are present is
    neither retrained nor re-measured. Raises checkpoint.Preempted after saving on SIGTERM. part: (k, K), the arm's
    place in the run (its progress lines add the whole run's ETA). checked: what `resumable.check_resume` returned
    for the arm.
    """
    t0 = time.perf_counter()
    graphdef, tx, state = task.make_train_state(c, mesh)
    arm_dir = os.path.join(workdir, arm) if workdir else None
    out = resumable.train(
        arm_dir,
        arm_run_config(c, arm),
        task.make_step_fn(c, arm, dictionary, graphdef, tx, mesh),
        state,
        mesh=mesh,
        total_steps=c.train.steps,
        mutable_fields=RESUME_MUTABLE_FIELDS,
        on_log=lambda step, st: results.recovery_row(c, _host_weights(graphdef, st), dictionary),
        name=arm,
        verbose=verbose,
        part=part,
        checked=checked,
    )
    model = loop.merge(graphdef, jax.tree_util.tree_map(lambda x: jnp.asarray(jax.device_get(x)), out.state))
    weights = np.asarray(task.encoder(model).w[...])
    path = os.path.join(arm_dir, "results.json") if arm_dir else None
    record, steps = arm_run_config(c, arm), c.train.steps
    finished = path and out.start == steps
    done = finished_results(path, record, steps, config_guard.MUTABLE_FIELDS + ("arms",)) if finished else None
    if done is not None:
        if verbose:
            log_once(f"[{arm}] finished earlier (step {out.start}): results from {path}")
        return done, weights, out.history
    res = results.measure(c, arm, model, dictionary)
    res["final_loss"] = out.last_row["contrastive_loss"] if out.last_row else float("nan")
    res["steps"] = c.train.steps
    res["seconds"] = round(time.perf_counter() - t0, 2)
    if path and jax.process_index() == 0:
        jsonio.dump({"config": record, "results": res}, path)
    return res, weights, out.history


def _host_weights(graphdef, state: loop.TrainState) -> jax.Array:
    """w: [m, d1] of the paper's network in `state`, a process-local copy of the replicated weights."""
    return jnp.asarray(jax.device_get(task.encoder(loop.merge(graphdef, state)).w[...]))


def run(config: ml_collections.ConfigDict, workdir: str | None, *, verbose: bool = True) -> dict:
    """All arms of the experiment; writes the workdir and its report (process 0); returns the summary dict.

    Started again in the same workdir it resumes (see train_arm); raises checkpoint.Preempted on SIGTERM after
    saving, config_guard.ConfigMismatch if the workdir's checkpoints were made with a config that changes the run.
    """
    c = validate(config)
    mesh = mesh_lib.make_mesh(c.train.num_devices)
    mesh_lib.check_batch_size(c.train.batch_size, mesh)
    dictionary = task.make_dictionary(c)
    names, checked = arm_names(c), {}
    if workdir:
        for arm in names:  # a refused resume leaves the workdir as it was
            checked[arm] = resumable.check_resume(
                os.path.join(workdir, arm),
                arm_run_config(c, arm),
                mutable_fields=RESUME_MUTABLE_FIELDS,
                total_steps=c.train.steps,
            )
        run_info.write_run_info(workdir, c, kind="synthetic")  # process 0 only
    from cl_features.report import synthetic as report  # matplotlib: only once the config is good

    summary, weights = {"arms": {}, "config": c.to_dict()}, {}
    for k, arm in enumerate(names):
        res, weights[arm], _ = train_arm(
            c,
            arm,
            dictionary,
            mesh=mesh,
            workdir=workdir,
            verbose=verbose,
            part=(k, len(names)),
            checked=checked.get(arm),
        )
        summary["arms"][arm] = res
        if verbose:
            log_once(f"[{arm}] " + "  ".join(f"{k}={res[k]:.4g}" for k in report.COLUMNS if k in res))
    if workdir and jax.process_index() == 0:
        workdir_lib.savez(
            os.path.join(workdir, "weights.npz"),
            dictionary=np.asarray(dictionary),
            **{f"w_{k}": v for k, v in weights.items()},
        )
        jsonio.dump(summary, os.path.join(workdir, "summary.json"))
        figures = report.write_report(workdir)
        pngs = {os.path.splitext(k)[0]: p for k, p in figures.items() if k.endswith(".png")}
        log_figures(workdir, c.train.steps, pngs)
    return summary
