"""Every notebook runs top to bottom at toy size (parameter cell overridden, papermill-style) without an error.

The kernel is this interpreter (a kernelspec written to a temp dir), with the worktree on PYTHONPATH, so the
notebook's setup cell finds the package already importable and installs nothing. The setup cell alone runs in a
bare interpreter (nothing installed) to check the JAX build it would install and its refusal of the placeholder
REPO_URL; the committed notebooks carry the outputs of a run at their default parameters.
"""

import base64
import io
import os
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from PIL import Image

nbclient = pytest.importorskip("nbclient")
from ipykernel.kernelspec import write_kernel_spec  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "experiments", "notebooks")
NAMES = ("synthetic.ipynb", "decoupling.ipynb")


def parameters_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"want exactly one cell tagged 'parameters', found {len(tagged)}"
    assert nb.cells[tagged[0]].cell_type == "code"
    return tagged[0]


def execute(name: str, overrides: dict, tmp_path, monkeypatch):
    """Runs notebook `name` with `overrides` injected after its parameter cell; returns the executed notebook."""
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    at = parameters_index(nb)
    for key in overrides:  # an override must name a real parameter
        assert f"\n{key} = " in "\n" + nb.cells[at].source, f"{key} is not set in the parameter cell"
    injected = nbformat.v4.new_code_cell(
        "\n".join(f"{k} = {v!r}" for k, v in overrides.items()), metadata={"tags": ["injected-parameters"]}
    )
    nb.cells.insert(at + 1, injected)
    for c in nb.cells:  # the committed outputs are not this run's
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))

    spec_dir = write_kernel_spec(tmp_path / "kernels" / "python3")
    ksm = KernelSpecManager(kernel_dirs=[os.path.dirname(spec_dir)])
    assert ksm.get_kernel_spec("python3").argv[0] == sys.executable
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(
        nb, km=km, timeout=120, allow_errors=False, resources={"metadata": {"path": NOTEBOOKS}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert nb.cells[-1].outputs[0].text.strip() == sys.executable
    return nb


def images_shown(nb) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(o.data["image/png"]))))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})
    ]


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def setup_source(name: str) -> str:
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    (source,) = [c.source for c in nb.cells if c.cell_type == "code" and "REPO_URL = " in c.source]
    return source


def run_setup(source: str, tmp_path, env: dict, prelude: str = ""):
    """The setup cell in a bare interpreter (no site-packages: cl_features does not import), outside a checkout."""
    env = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + source], cwd=tmp_path, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("name", NAMES)
def test_setup_refuses_the_placeholder_repo_url(name, tmp_path):
    out = run_setup(setup_source(name), tmp_path, {"JAX_PLATFORMS": "cpu"})
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: REPO_URL is the placeholder https://github.com/ME/cl_features.git: set it")
    assert "installing" not in out.stdout  # refused before pip runs


@pytest.mark.parametrize("platform,build", [("tpu", "jax[tpu]"), ("cuda", "jax[cuda12]"), ("cpu", "jax")])
def test_setup_installs_the_jax_build_of_the_runtime(platform, build, tmp_path):
    source = setup_source("synthetic.ipynb").replace(
        'REPO_URL = "https://github.com/ME/cl_features.git"', 'REPO_URL = "https://example.org/cl_features.git"'
    )
    prelude = "import subprocess, sys\nsubprocess.run = lambda cmd, **kw: (print(repr(cmd)), sys.exit(0))\n"
    out = run_setup(source, tmp_path, {"JAX_PLATFORMS": platform}, prelude)
    assert out.returncode == 0, out.stderr
    cmd = eval(out.stdout.strip().splitlines()[-1])
    assert cmd[1:] == ["-m", "pip", "install", "-q", build, "git+https://example.org/cl_features.git"]


def test_notebooks_are_parameterised_and_saved_with_a_run():
    """The committed notebooks show a real run: every code cell ran in order, without an error, within size."""
    names = sorted(f for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb"))
    assert names == sorted(NAMES)
    for name in names:
        path = os.path.join(NOTEBOOKS, name)
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        parameters_index(nb)
        assert nb.metadata.kernelspec.name == "python3"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"{name}: not run top to bottom"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], f"{name}: saved with an error"
        assert images_shown(nb), f"{name}: no figure saved"
        assert text_of(code[0]).startswith("cl_features "), f"{name}: the setup cell installed something"
        assert all(len(text_of(c)) < 50_000 for c in code), f"{name}: a cell's printed output is too long"
        assert os.path.getsize(path) < 3_000_000


@pytest.mark.slow
def test_synthetic_notebook(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    nb = execute(
        "synthetic.ipynb",
        {
            "WORKDIR": workdir,
            "ARMS": "complementary_mask",
            "D": 8,
            "D1": 32,
            "STEPS": 40,
            "BATCH_SIZE": 32,
            "BIAS_RAMP_STEPS": 20,
            "LOG_EVERY": 20,
            "OVERRIDES": {"train.steps_per_call": 10, "measure.num_samples": 64},
        },
        tmp_path,
        monkeypatch,
    )
    setup = text_of(nb.cells[2])
    assert setup.startswith("cl_features ") and setup.strip().endswith(os.path.join(ROOT, "cl_features"))
    assert "backend cpu" in text_of(nb.cells[3])
    (drive_cell,) = [c for c in nb.cells if c.source.startswith("import os\n\nif USE_DRIVE:")]
    assert text_of(drive_cell) == f"workdir: {workdir}\n"  # USE_DRIVE = False: the workdir as given
    # The three figures are shown inline, pixel for pixel the files in the workdir.
    shown = images_shown(nb)
    files = [
        np.asarray(Image.open(os.path.join(workdir, f))) for f in ("recovery.png", "cosines.png", "decoupling.png")
    ]
    assert len(shown) == 3
    for got, want in zip(shown, files):
        np.testing.assert_array_equal(got, want)
    # The table shown is the run's summary.md, for the one arm asked for, at the overridden sizes.
    table = open(os.path.join(workdir, "summary.md")).read()
    markdown = [
        o.data["text/markdown"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/markdown" in o.get("data", {})
    ]
    assert markdown == [table]
    assert table.splitlines()[2].startswith("| complementary_mask |") and len(table.splitlines()) == 3
    assert os.path.exists(os.path.join(workdir, "complementary_mask", "metrics.jsonl"))


@pytest.mark.slow
def test_decoupling_notebook(tmp_path, monkeypatch):
    sets = ("none", "crop_flip_color")
    nb = execute(
        "decoupling.ipynb",
        {
            "CROPS_PER_IMAGE": 8,
            "SETS": ",".join(sets),
            "N_SHOW": 3,
            "PATCH_SIZE": 5,
            "N_ATOMS": 8,
            "N_PATCHES": 1000,
            "STRIDE": 3,
        },
        tmp_path,
        monkeypatch,
    )
    photos, views, bars = images_shown(nb)
    assert views.shape[0] > photos.shape[0]  # one row of crops plus one row per set
    (markdown,) = [
        o.data["text/markdown"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/markdown" in o.get("data", {})
    ]
    header, _, *rows = markdown.splitlines()
    columns = [h.strip() for h in header.strip("|").split("|")]
    table = {
        r.strip("|").split("|")[0].strip(): dict(zip(columns[1:], map(float, r.strip("|").split("|")[1:])))
        for r in rows
    }
    assert list(table) == list(sets)
    # Identical views: every statistic correlates perfectly.
    assert all(v == 1.0 for v in table["none"].values())
    # Colour jitter and crops decorrelate the views' colour statistics.
    assert table["crop_flip_color"]["mean_colour"] < 0.9
    assert table["crop_flip_color"]["dense_mean"] == pytest.approx(
        np.mean([table["crop_flip_color"][s] for s in ("mean_colour", "colour_histogram", "low_frequency_energy")]),
        abs=2e-3,
    )
