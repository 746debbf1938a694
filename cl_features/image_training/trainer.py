"""Training one image model: validate, train (resumable), run (writes the workdir), restore.

`run(config, workdir)` writes metrics.jsonl (+ TensorBoard events), checkpoints, summary.json, run_info.json and
the report (curves.png, summary.md) into `workdir` (process 0) and returns the summary.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections

from cl_features import jsonio
from cl_features import workdir as workdir_lib
from cl_features.config_checks import at_least
from cl_features.data import loader
from cl_features.image_training import evaluator, inputs, network, recipe
from cl_features.image_training.inputs import ImageData
from cl_features.image_training.network import ImageModel
from cl_features.measure import collapse
from cl_features.report import run_info
from cl_features.train import checkpoint, config_guard, loop, resumable
from cl_features.train import mesh as mesh_lib
from cl_features.train.distributed import log_once
from cl_features.train.metrics_log import MetricsLog

SUMMARY_KEYS = (
    "knn_acc",
    "linear_probe_acc",
    "online_probe_acc",
    "test_acc",
    "effective_rank",
    "final_loss",
    "steps",
    "seconds",
)
# Config fields a resumed run may change: frequencies, steps, devices (checkpoint module), evaluation, where the
# data lives, and how the steps of a call are compiled.
RESUME_MUTABLE_FIELDS = config_guard.MUTABLE_FIELDS + ("train.epochs", "train.unroll", "eval", "probe", "data.data_dir")
TRAIN_STREAM = 2  # folded into the seed for the training steps' keys (1: initial weights, 4: kNN bank subset)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field before any data is read or anything compiled; returns a copy."""
    c = ml_collections.ConfigDict(config.to_dict())
    at_least(c, 0, "seed")
    inputs.check_fields(c)
    network.check_fields(c)
    recipe.check_fields(c)
    resumable.check_fields(c)
    evaluator.check_fields(c)
    return c


def make_mesh(c: ml_collections.ConfigDict):
    mesh = mesh_lib.make_mesh(c.train.num_devices)
    mesh_lib.check_batch_size(c.train.batch_size, mesh)
    mesh_lib.check_batch_size(c.eval.batch_size, mesh, field="eval.batch_size")
    if c.train.batch_size % jax.process_count() or c.eval.batch_size % jax.process_count():
        raise ValueError(
            f"config.train.batch_size and config.eval.batch_size must be divisible by the "
            f"{jax.process_count()} processes"
        )
    return mesh


def make_step_fn(c: ml_collections.ConfigDict, graphdef, tx, schedule: recipe.Schedule, mesh) -> loop.StepFn:
    """The compiled multi-step train function of a validated config: batches from the host, sharded on the mesh."""
    return loop.make_step_fn(
        graphdef,
        tx,
        network.make_loss_fn(c, mesh),
        mesh=mesh,
        steps_per_call=c.train.steps_per_call,
        host_batches=True,
        unroll=network.unroll(c),
        learning_rate=recipe.lr_schedule(c, schedule),
        examples_per_step=c.train.batch_size,
        after_update=network.make_after_update(c, schedule.steps),  # BYOL's EMA target, after the optimiser step
    )


def train(
    c: ml_collections.ConfigDict,
    workdir: str | None,
    *,
    data: ImageData | None = None,
    monitor: bool = True,
    verbose: bool = True,
    checked: tuple[int, dict] | None = None,
) -> tuple[dict, ImageModel]:
    """Trains a validated config in `workdir` (resumed from its checkpoints); returns (results, trained model).

    monitor: the kNN / online-probe evaluation (eval.*), the initial scores (eval.at_init) and the offline probe
    (probe.*); without it only the training rows are logged. checked: `resumable.check_resume`'s answer for it.
    """
    t0 = time.perf_counter()
    mesh = make_mesh(c)
    data = data or inputs.open_data(c)
    schedule = recipe.make_schedule(c, len(data.train))
    steps, tx = schedule.steps, recipe.make_optimizer(c, schedule)
    train_seed = int(jax.random.randint(jax.random.fold_in(jax.random.key(c.seed), TRAIN_STREAM), (), 0, 2**31 - 1))
    graphdef, state = loop.init_state(network.make_model(c, data.num_classes), tx, train_seed)
    step_fn = make_step_fn(c, graphdef, tx, schedule, mesh)
    batches = loader.make_loader(
        data.train,
        global_batch_size=c.train.batch_size,
        seed=c.seed,
        image_size=c.data.image_size,
        worker_count=c.data.worker_count,
    )
    ev = evaluator.Evaluator(c, graphdef, data, mesh) if monitor else None
    last_eval: dict = {}

    def on_log(step: int, st: loop.TrainState) -> dict:
        if step == 0:
            scores, feats = ev.evaluate(st)
            init = {"knn_acc": scores["knn_acc"]}
            if c.probe.enabled:
                init["linear_probe_acc"] = ev.probe(feats)["linear_probe_acc"]
            return init
        every = c.eval.every_steps
        if step == steps or (every and step % every == 0):
            scores, feats = ev.evaluate(st)
            last_eval.update(step=step, scores=scores, feats=feats)
            return scores
        return {}

    out = resumable.train(
        workdir,
        c.to_dict(),
        step_fn,
        loop.place_state(state, mesh),
        mesh=mesh,
        total_steps=steps,
        mutable_fields=RESUME_MUTABLE_FIELDS,
        batch_iter=iter(batches),  # its position is checkpointed with the state
        on_log=on_log if monitor else None,
        log_initial=monitor and c.eval.at_init,
        name=_label(c),
        verbose=verbose,
        checked=checked,
    )
    results = {f"{k}_init": v for k, v in out.initial_row.items()}
    if monitor:
        if last_eval.get("step") != steps:  # a finished run started again: measure, log nothing
            last_eval.update(zip(("scores", "feats"), ev.evaluate(out.state)), step=steps)
        results.update(last_eval["scores"])
        # the collapse measure of the synthetic experiment: effective rank of the encoder's test features
        results["effective_rank"] = collapse.collapse(jnp.asarray(last_eval["feats"]["test"][0]))["effective_rank"]
        if c.probe.enabled:
            probe = ev.probe(last_eval["feats"])
            results.update(probe)
            if out.history and workdir:
                with MetricsLog(os.path.join(workdir, "metrics.jsonl")) as log:
                    log.write(steps, {k: probe[k] for k in ("linear_probe_acc", "linear_probe_l2")})
    final = out.last_row or {}
    results["final_loss"] = final.get("contrastive_loss", final.get("loss", float("nan")))
    results["steps"] = steps
    results["resumed_from"] = out.start
    results["images_per_second"] = (steps - out.start) * c.train.batch_size / out.seconds if steps > out.start else None
    results["seconds"] = round(time.perf_counter() - t0, 2)
    summary = {
        "task": c.task,
        "num_train": len(data.train),
        "num_test": len(data.test),
        "num_classes": data.num_classes,
        "learning_rate": schedule.learning_rate,
        "warmup_steps": schedule.warmup_steps,
        **results,
    }
    return summary, loop.merge(graphdef, out.state)


def run(
    config: ml_collections.ConfigDict, workdir: str | None, *, verbose: bool = True, data: ImageData | None = None
) -> dict:
    """Trains, monitors and probes one image model; writes the workdir (process 0); returns the summary.

    With a workdir the run checkpoints every checkpoint.every steps and resumes from the newest checkpoint with
    the numbers an uninterrupted run would have had (docs/images.md); SIGTERM raises checkpoint.Preempted, a
    changed config config_guard.ConfigMismatch. `data`: the sources of `inputs.open_data(config)`, if opened.
    """
    c = validate(config)
    data = data or inputs.open_data(c)  # missing data stops the run before anything is written
    checked = None
    if workdir:  # a refused resume leaves the workdir as it was
        steps = recipe.make_schedule(c, len(data.train)).steps
        checked = resumable.check_resume(workdir, c.to_dict(), mutable_fields=RESUME_MUTABLE_FIELDS, total_steps=steps)
        run_info.write_run_info(workdir, c, kind="images")  # process 0 only
    summary, _ = train(c, workdir, data=data, verbose=verbose, checked=checked)
    summary["config"] = c.to_dict()
    if verbose:
        log_once(f"[{_label(c)}] " + "  ".join(f"{k}={summary[k]:.4g}" for k in SUMMARY_KEYS if k in summary))
    if workdir and jax.process_index() == 0:
        workdir_lib.path(workdir).mkdir(parents=True, exist_ok=True)
        jsonio.dump(summary, os.path.join(workdir, "summary.json"))
        from cl_features.report import images as report  # matplotlib: only once the run is done

        report.report(workdir, None)  # curves.png and summary.md
    return summary


def restore(workdir: str, subdir: str = "checkpoints") -> tuple[ml_collections.ConfigDict, ImageModel, int, dict]:
    """(config, model, step, summary) of an image-experiment workdir at its newest checkpoint.

    The config is the one saved with the newest checkpoint (a run stopped early is read at its last checkpoint,
    whatever a later start recorded); the checkpointer falls back past a corrupt checkpoint. `summary` is
    summary.json only where it was written at the restored step (else {}: its scores belong to another step).
    """
    directory = os.path.join(workdir, subdir)
    found = checkpoint.saved_config(directory)
    if found is None:
        raise FileNotFoundError(
            f"no checkpoint under {workdir_lib.absolute(directory)!r} (not an image-experiment workdir)"
        )
    c = validate(ml_collections.ConfigDict(found[1]))
    path, summary = os.path.join(workdir, "summary.json"), {}
    if workdir_lib.path(path).exists():
        summary = jsonio.load(path)
    if "num_classes" in summary and "num_train" in summary:
        num_classes, num_train = int(summary["num_classes"]), int(summary["num_train"])
    else:
        data = inputs.open_data(c)
        num_classes, num_train = data.num_classes, len(data.train)
    tx = recipe.make_optimizer(c, recipe.make_schedule(c, num_train))
    graphdef, state = loop.init_state(network.make_model(c, num_classes), tx, 0)
    with checkpoint.Checkpointer(directory, config=c.to_dict(), mutable_fields=RESUME_MUTABLE_FIELDS) as ck:
        restored = ck.restore(state)
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint under {workdir_lib.absolute(directory)!r}")
    summary = summary if summary.get("steps") == restored.step else {}
    return c, loop.merge(graphdef, restored.state), restored.step, summary


def _label(c: ml_collections.ConfigDict) -> str:
    """The run's name in logs: the task, with the objective unless it is SimCLR's nt_xent."""
    return c.task if c.objective.name == "nt_xent" else f"{c.task}/{c.objective.name}"
