# The two commands of the README. Both create ./.venv on first use and install the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs/synthetic
TEST_WORKERS ?= 2

.PHONY: demo test install clean format

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the paper's synthetic experiment on its default config (CPU, a few minutes).
demo: $(STAMP)
	$(PY) -m experiments.synthetic --config=experiments/configs/synthetic.py --workdir=$(WORKDIR)

# Formatter and linter checks, then the test suite (toy sizes; what CI runs).
test: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# Rewrites the code with the project's formatter and applies the linter's safe fixes.
format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) runs
