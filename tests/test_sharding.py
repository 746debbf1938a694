"""Data-parallel sharding on 4 forced CPU devices (a subprocess: XLA_FLAGS must be set before JAX starts).

The loss is computed on the global [N, N] logits, so a run on 4 devices must match the one-device run up
to float32 reduction order. Measured (jax 0.10.2, CPU): the first step's loss agrees to 6e-8 relative and its
gradient to 6e-8 absolute (max |g| 0.45); over 100 steps the logged losses to 1.4e-7 relative and the final
weights to 1.1e-7 absolute (4e-7 of max |w|). Asserted with margin: rtol 1e-5, atol 1e-6.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from cl_features.augment import vectors
    from cl_features.data import sparse_coding
    from cl_features.synthetic import arms, task
    from cl_features.train import mesh as mesh_lib
    from experiments.configs import synthetic as synthetic_config

    # Identical step functions are rebuilt below (resume on 1 and 4 devices): compile each once.
    jax.config.update("jax_compilation_cache_dir", sys.argv[3])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    ARM = "complementary_mask"
    c = synthetic_config.get_config()
    c.arms, c.data.d, c.data.d1, c.model.width, c.train.batch_size = ARM, 8, 32, 16, 32
    c.train.steps, c.train.steps_per_call, c.train.log_every, c.checkpoint.every = 100, 10, 20, 20
    c.train.schedule = "constant"  # the resumed run below extends train.steps
    c.objective.weight_decay = 0.0  # the loss is the InfoNCE alone, as in the float64 reference
    c.measure.num_samples, c.measure.probe_tasks = 256, 2
    c = arms.validate(c)
    dictionary = task.make_dictionary(c)
    out = {"devices": jax.device_count(), "runs": {}}

    for n in (1, 4):
        mesh = mesh_lib.make_mesh(n)
        results, w, history = arms.train_arm(c, ARM, dictionary, mesh=mesh, workdir=None, verbose=False)
        out["runs"][n] = {"w": w.tolist(), "history": history, "results": results}

    # First step: loss and gradient on 1 and 4 devices, and float64 references with global / per-device negatives.
    key = jax.random.fold_in(jax.random.key(7), 0)
    first = {}
    for n in (1, 4):
        mesh = mesh_lib.make_mesh(n)
        graphdef, tx, state = task.make_train_state(c, mesh)
        loss_fn = task.make_loss_fn(c, ARM, dictionary, mesh)

        def loss_of(params, key=key, graphdef=graphdef, state=state, loss_fn=loss_fn):
            return loss_fn(nnx.merge(graphdef, params, state.rest), None, key, jnp.int32(0))[0]

        f = jax.jit(jax.value_and_grad(loss_of))
        loss, grad = f(state.params)
        hlo = f.lower(state.params).compile().as_text()
        first[n] = {"loss": float(loss), "grad": np.asarray(grad["w"][...]).tolist(),
                    "collectives": sum(hlo.count(op) for op in ("all-reduce", "all-gather", "reduce-scatter"))}
    model = task.make_model(c)
    k_data, k_aug = jax.random.split(key)
    ids = jnp.arange(c.train.batch_size, dtype=jnp.uint32)
    data = sparse_coding.sample(k_data, dictionary, c.train.batch_size, c.data.sparsity, c.data.sigma, ids)
    views = vectors.augment_parts(ARM, sparse_coding.example_keys(k_aug, ids), data.mz, data.xi,
                                  task.augment_params(c))
    bs = task.bias_scale_at(c, 0)
    h1, h2 = (np.asarray(model(v, bs), np.float64) for v in (views.view1, views.view2))

    def info_nce64(a, b):
        logits = a @ b.T / c.objective.temperature
        top = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        return float(np.mean(lse - np.diag(logits)))

    first["global64"] = info_nce64(h1, h2)
    first["local64"] = float(np.mean([info_nce64(h1[i:i + 8], h2[i:i + 8]) for i in range(0, 32, 8)]))
    out["first"] = first

    bad = c.copy_and_resolve_references()
    bad.train.batch_size, bad.train.num_devices = 30, 4
    try:
        arms.run(bad, None, verbose=False)
        out["bad_batch"] = None
    except ValueError as e:
        out["bad_batch"] = str(e)

    # Checkpoint written on 4 devices, resumed on 1 (train.num_devices may change on resume).
    wd = sys.argv[2]
    short = c.copy_and_resolve_references()
    short.train.steps = 40
    arms.train_arm(short, ARM, dictionary, mesh=mesh_lib.make_mesh(4), workdir=wd, verbose=False)
    _, w_resumed, hist = arms.train_arm(c, ARM, dictionary, mesh=mesh_lib.make_mesh(1), workdir=wd,
                                             verbose=False)
    out["resharded"] = {"w": w_resumed.tolist(), "steps": [r["step"] for r in hist]}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
""")

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharding")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    # The 4 forced devices share 2 cores: on a loaded machine one can reach a collective long after the others.
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
        XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_cpu_collective_timeout_seconds=600 "
        "--xla_cpu_collective_call_terminate_timeout_seconds=600",
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp / "out.json"), str(tmp / "work"), str(tmp / "xla_cache")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "out.json").read_text())


def test_four_forced_devices(out):
    assert out["devices"] == 4


def test_first_step_loss_uses_the_global_batch_and_matches_one_device(out):
    first = out["first"]
    assert first["1"]["collectives"] == 0 and first["4"]["collectives"] > 0  # the 4-device step is distributed
    np.testing.assert_allclose(first["4"]["loss"], first["1"]["loss"], rtol=1e-6)
    np.testing.assert_allclose(first["4"]["grad"], first["1"]["grad"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(first["4"]["loss"], first["global64"], rtol=1e-5)
    # Negatives from each device's shard alone would give a clearly different (smaller) loss.
    assert first["global64"] - first["local64"] > 0.5


def test_sharded_run_matches_one_device(out):
    one, many = out["runs"]["1"], out["runs"]["4"]
    assert [r["step"] for r in many["history"]] == [r["step"] for r in one["history"]] == [20, 40, 60, 80, 100]
    for a, b in zip(many["history"], one["history"]):
        for k in ("loss", "contrastive_loss", "instance_acc", "active_frac", "span_share"):
            np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=ATOL, err_msg=f"{k} at step {a['step']}")
    np.testing.assert_allclose(many["w"], one["w"], rtol=RTOL, atol=ATOL)
    for k in ("final_loss", "span_share", "sparse_corr", "dense_corr"):
        np.testing.assert_allclose(many["results"][k], one["results"][k], rtol=RTOL, atol=ATOL, err_msg=k)


def test_batch_not_divisible_by_devices_is_a_clear_error(out):
    assert out["bad_batch"] == "train.batch_size=30 must be divisible by the number of devices (4)"


def test_checkpoint_from_four_devices_resumes_on_one(out):
    assert out["resharded"]["steps"] == [60, 80, 100]
    np.testing.assert_allclose(out["resharded"]["w"], out["runs"]["1"]["w"], rtol=RTOL, atol=ATOL)
