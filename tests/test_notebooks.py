"""The notebooks as a reader gets them: one set-up cell from one template, hidden on the pages,
installing only the pinned runtime stack; code lines that fit the rendered column.

The set-up cell's text lives in book/setup_cell.py; `python tools/sync_setup_cell.py` writes it
into every notebook. The Colab path itself is executed by tests/test_colab.py.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "book").glob("*.ipynb"))
TEMPLATE = (REPO / "book" / "setup_cell.py").read_text(encoding="utf8").rstrip("\n")
MAX_LINE = 88  # characters that fit the rendered code column of the book's theme
NEVER_AT_RUN_TIME = ("jupyter-book", "sphinx", "nbval", "pytest", "ipykernel", "ipywidgets",
                     "jupyter", "nbformat", "nbclient", "hypothesis")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf8"))["cells"]


def _code_cells(path: Path) -> list[dict]:
    return [c for c in _cells(path) if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_setup_template_hidden_on_the_page(path):
    cell = _code_cells(path)[0]
    assert "".join(cell["source"]) == TEMPLATE, (
        f"{path.name}: the first code cell differs from book/setup_cell.py; "
        "run `python tools/sync_setup_cell.py`")
    assert "remove-cell" in cell.get("metadata", {}).get("tags", []), (
        f"{path.name}: the set-up cell lacks the tag remove-cell (it would show on the page)")
    later = [i for i, c in enumerate(_code_cells(path)[1:], 1)
             if "remove-cell" in c.get("metadata", {}).get("tags", [])]
    assert not later, f"{path.name}: code cells {later} are removed from the page too"


def test_setup_cell_repository_url_is_the_configs():
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
    urls = re.findall(r'REPO_URL = "([^"]+)"', TEMPLATE)
    assert urls == [config["repository"]["url"]]


def _requirement_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text(encoding="utf8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return names


def test_setup_cell_installs_only_the_pinned_runtime_stack():
    assert "requirements-runtime.txt" in TEMPLATE and "requirements-nodeps.txt" in TEMPLATE
    assert "requirements.txt" not in TEMPLATE.replace("-runtime.txt", "").replace(
        "-nodeps.txt", "")
    runtime = _requirement_names(REPO / "requirements-runtime.txt")
    nodeps = _requirement_names(REPO / "requirements-nodeps.txt")
    for name in runtime + nodeps:
        assert not name.startswith(NEVER_AT_RUN_TIME), f"{name} is not a run-time dependency"
    pins = dict(re.findall(r"^([a-z-]+)==(\S+)$", (REPO / "requirements-runtime.txt")
                           .read_text(encoding="utf8"), flags=re.M))
    assert pins["jax"] == pins["jaxlib"] == re.search(r'JAX = "([^"]+)"', TEMPLATE).group(1)
    assert {"flax", "optax"} <= set(pins)
    assert "-r requirements-runtime.txt" in (REPO / "requirements.txt").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_rendered_column(path):
    wide = [(i, n, len(line)) for i, cell in enumerate(_cells(path))
            if cell["cell_type"] == "code"
            for n, line in enumerate("".join(cell["source"]).splitlines(), 1)
            if len(line) > MAX_LINE]
    assert not wide, (f"{path.name}: code lines wider than {MAX_LINE} characters "
                      f"(cell index, line, length): {wide[:10]}{' …' if len(wide) > 10 else ''}")
