"""A sweep's run: every group trained (resumable), every run measured, sweep.json and the phase diagrams written.

<workdir>/groups/<group>/ holds each group's checkpoints (the batched state, through `train.resumable`),
metrics.jsonl (the mean loss over its runs and each run's recovered fraction and span share) and results.json; a
group whose results.json matches its config and train.steps is neither retrained nor re-measured. The final
measurements of each run are the synthetic driver's (`synthetic.results.measure`, on the host: its probes are a
float64 ridge), so a run's results mean what the same run alone reports.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np

from cl_features import jsonio
from cl_features.report import run_info
from cl_features.sweep import batched, grid
from cl_features.synthetic import arms, results
from cl_features.train import config_guard, resumable
from cl_features.train.distributed import log_once


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks the sweep fields and every run's config before anything is compiled."""
    grid.expand(config)
    return config


class _Progress:
    """`[sweep] group g/G name step s/N  recovered r  run-steps/s  ETA` lines (rate between consecutive lines)."""

    def __init__(self, sweep: grid.Sweep, steps: int):
        self.total, self.groups, self.steps = len(sweep.runs) * steps, len(sweep.groups), steps
        self.done, self.rate, self.mark = 0, None, None  # run-steps of finished groups; run-steps/s

    def update(self, g: int, group: grid.Group, step: int, recovered: float) -> None:
        now, done = time.perf_counter(), self.done + step * len(group.runs)
        if self.mark is not None and done > self.mark[1]:
            self.rate = (done - self.mark[1]) / max(now - self.mark[0], 1e-9)
        self.mark = (now, done)
        left = (self.total - done) / self.rate if self.rate else None
        eta, rate = ("--", "--") if left is None else (f"{left // 60:.0f}m{left % 60:02.0f}s", f"{self.rate:.0f}")
        log_once(
            f"[sweep] group {g + 1}/{self.groups} {group.name} ({len(group.runs)} runs) step {step}/{self.steps}  "
            f"recovered {recovered:.3f}  {rate} run-steps/s  sweep {done / self.total:.0%}  ETA {eta}"
        )


def _group_record(c, sweep: grid.Sweep, g: int, mesh, workdir: str | None) -> tuple[list, dict, str | None]:
    """The configs of a group's runs, what its checkpoints record (its first run's config and the runs) and its
    directory (None without a workdir)."""
    group = sweep.groups[g]
    configs = [grid.run_config(c, sweep.runs[i]) for i in group.runs]
    pad = batched.padded_runs(len(group.runs), mesh.shape[batched.RUN_AXIS], c.sweep.vmap_runs)
    run_dir = os.path.join(workdir, "groups", group.name) if workdir else None
    return configs, dict(configs[0].to_dict(), runs=group.traced, padded_runs=pad), run_dir


def train_group(c, sweep: grid.Sweep, g: int, mesh, workdir: str | None, progress: _Progress, checked=None) -> list:
    """Trains and measures one group; returns the results of its runs (in order). checked: check_resume's answer."""
    t0, group = time.perf_counter(), sweep.groups[g]
    configs, record, run_dir = _group_record(c, sweep, g, mesh, workdir)
    gc, steps = configs[0], configs[0].train.steps
    path = os.path.join(run_dir, "results.json") if run_dir else None
    done = arms.finished_results(path, record, steps, config_guard.MUTABLE_FIELDS) if path else None
    if done is not None:
        log_once(f"[sweep] group {g + 1}/{len(sweep.groups)} {group.name}: finished earlier, results from {path}")
        return done
    program = batched.build(gc, group.arm, group.traced, mesh, c.sweep.vmap_runs)

    def on_log(step, state):
        rec = {k: np.asarray(v)[: len(group.runs)].tolist() for k, v in jax.device_get(program.log(state)).items()}
        progress.update(g, group, step, float(np.mean(rec["recovered_fraction"])))
        return rec

    out = resumable.train(
        run_dir,
        record,
        program.step_fn,
        program.state,
        mesh=mesh,
        total_steps=steps,
        mutable_fields=arms.RESUME_MUTABLE_FIELDS,
        on_log=on_log,
        name=group.name,
        verbose=False,
        checked=checked,
    )
    last, diverged = jax.device_get((out.state.last, out.state.diverged_at))
    rows = []
    for i, model in enumerate(batched.run_models(program, out.state, len(group.runs))):
        r = results.measure(configs[i], group.arm, model, program.dictionaries[i])
        rows.append(dict(r, final_loss=float(last["contrastive_loss"][i]), diverged_at=int(diverged[i]), steps=steps))
    if path and jax.process_index() == 0:
        seconds = round(time.perf_counter() - t0, 2)
        jsonio.dump({"config": record, "results": rows, "steps": steps, "seconds": seconds}, path)
    return rows


def run(config: ml_collections.ConfigDict, workdir: str | None) -> dict:
    """Every group of the sweep; writes <workdir>/sweep.json and the phase diagrams; returns the sweep dict."""
    if jax.process_count() > 1:
        raise ValueError("the sweep runs in one process (its devices share the runs); start it without --distributed")
    sweep = grid.expand(config)
    mesh = batched.make_mesh(config.train.num_devices)
    checked = [None] * len(sweep.groups)
    if workdir:
        for g in range(len(sweep.groups)):  # a refused resume leaves the workdir as it was
            configs, record, run_dir = _group_record(config, sweep, g, mesh, workdir)
            steps = configs[0].train.steps
            checked[g] = resumable.check_resume(
                run_dir, record, mutable_fields=arms.RESUME_MUTABLE_FIELDS, total_steps=steps
            )
        run_info.write_run_info(workdir, config, kind="sweep")
    from cl_features.report import phase  # matplotlib: only once the config is good

    t0, progress = time.perf_counter(), _Progress(sweep, config.train.steps)
    found = [None] * len(sweep.runs)
    log_once(f"[sweep] {len(sweep.runs)} runs in {len(sweep.groups)} compiled groups on {mesh.size} device(s)")
    for g, group in enumerate(sweep.groups):
        for i, r in zip(group.runs, train_group(config, sweep, g, mesh, workdir, progress, checked[g]), strict=True):
            found[i] = r
        progress.done, progress.mark = progress.done + len(group.runs) * config.train.steps, None
    out = {
        "config": config.to_dict(),
        "axes": {k: v and {"field": v[0], "values": v[1]} for k, v in sweep.axes.items()},
        "panels": [{"arm": a, "objective": o} for a, o in sweep.panels],
        "runs": [{"values": v, "results": r} for v, r in zip(sweep.runs, found, strict=True)],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if workdir:
        jsonio.dump(out, os.path.join(workdir, "sweep.json"))
        phase.write_figures(workdir)
    return out
