"""docs/layout.md names modules that exist, and every module of the package is named there."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _named_modules() -> set[str]:
    """Paths of the .py files the map names: full paths, and short names after a full path in the same row."""
    named = set()
    for line in open(os.path.join(ROOT, "docs", "layout.md")):
        here = None
        for token in re.findall(r"`([^`]+)`", line):
            if token.startswith("cl_features/") and token.endswith("/"):
                here = token.rstrip("/")
            for name in re.findall(r"[\w/]+\.py\b", token):
                if name.startswith(("cl_features/", "experiments/")):
                    here = os.path.dirname(name)
                elif "/" in name:
                    name, here = f"cl_features/{name}", f"cl_features/{os.path.dirname(name)}"
                elif here is not None:
                    name = f"{here}/{name}"
                else:
                    continue
                named.add(name)
    return named


def test_every_module_the_map_names_exists():
    missing = sorted(p for p in _named_modules() if "*" not in p and not os.path.isfile(os.path.join(ROOT, p)))
    assert missing == []


def test_every_package_module_is_on_the_map():
    named = _named_modules()
    modules = [
        os.path.relpath(os.path.join(d, f), ROOT)
        for d, _, files in os.walk(os.path.join(ROOT, "cl_features"))
        for f in files
        if f.endswith(".py") and f != "__init__.py"
    ]
    assert sorted(m for m in modules if m not in named) == []
