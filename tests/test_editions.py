"""The two editions (tools/build_edition.py): the student edition provably has no solution.

Both editions are built with execution off (the notebooks' execution is checked elsewhere).
Every solution in the sources contributes a fingerprint: a run of at least 20 plain characters
from its body. The instructor edition must contain every fingerprint (so the check can fail);
the student edition must contain none, in any file of its build — HTML pages, search index and
the downloadable sources — while every exercise statement is still there.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_edition", REPO / "tools" / "build_edition.py")
build_edition = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_edition)

PLAIN = re.compile(r"[A-Za-z][A-Za-z ,;]{19,}")  # no quotes or dashes: smartquotes change them


def _markdown_sources() -> list[str]:
    texts = []
    for path in sorted((REPO / "book").glob("*")):
        if path.suffix == ".md":
            texts.append(path.read_text(encoding="utf8"))
        elif path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf8"))["cells"]
            texts += ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    return texts


def _blocks(kind: str) -> list[str]:
    """Bodies of every ``{kind}`` block in the book's Markdown."""
    bodies = []
    for text in _markdown_sources():
        for match in re.finditer(rf"^(`{{3,}}|:{{3,}})\{{{kind}\}}[^\n]*\n(.*?)^\1\s*$", text,
                                 flags=re.M | re.S):
            bodies.append(match.group(2))
    return bodies


def _fingerprint(body: str) -> str:
    lines = [ln for ln in body.splitlines() if not ln.startswith(":")]
    runs = [m.group(0).strip() for ln in lines for m in PLAIN.finditer(ln)]
    assert runs, f"no plain-text run of 20 characters in: {body[:200]!r}"
    return max(runs, key=len)


def _build_text(html: Path) -> str:
    return "\n".join(p.read_text(encoding="utf8", errors="replace")
                     for p in html.rglob("*") if p.is_file()
                     and p.suffix in (".html", ".js", ".ipynb", ".md", ".txt"))


def test_strip_solutions_handles_nested_fences_and_colon_blocks():
    text = ("intro\n\n````{solution} ex-a\n:class: dropdown\n\n```python\nx = 1\n```\n"
            "secret A\n````\n\nmiddle\n\n:::{solution} ex-b\nsecret B\n:::\nend\n")
    stripped, removed = build_edition.strip_solutions(text)
    assert removed == 2 and "secret" not in stripped and "x = 1" not in stripped
    assert stripped.startswith("intro") and "middle" in stripped and "end" in stripped
    with pytest.raises(ValueError, match="unclosed"):
        build_edition.strip_solutions("```{solution} x\nnever closed\n")


@pytest.fixture(scope="module")
def editions(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("editions")
    return {edition: _build_text(build_edition.build(edition, base / edition, execute=False,
                                                     strict=True))
            for edition in build_edition.EDITIONS}


@pytest.mark.slow
def test_student_edition_has_no_solution_and_every_exercise(editions):
    solutions, exercises = _blocks("solution"), _blocks("exercise")
    assert len(solutions) >= 30 and len(exercises) >= len(solutions)
    fingerprints = [_fingerprint(body) for body in solutions]
    missing = [f for f in fingerprints if f not in editions["instructor"]]
    assert not missing, f"fingerprints not found even in the instructor edition: {missing[:3]}"
    leaked = [f for f in fingerprints if f in editions["student"]]
    assert not leaked, f"solution text in the student edition: {leaked[:3]}"
    absent = [f for f in map(_fingerprint, exercises) if f not in editions["student"]]
    assert not absent, f"exercise statements missing from the student edition: {absent[:3]}"
    assert "(student edition)" in editions["student"]
