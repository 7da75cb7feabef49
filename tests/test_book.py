"""Checks of the book as a whole: stored notebooks, the Sphinx build, offline maths, CI command.

* every notebook under book/ is stored without outputs or execution counts;
* the book builds with warnings as errors (execution switched off: the notebooks themselves are
  executed by the real `jupyter-book build` in tests/test_rendered_pages.py);
* the built HTML loads MathJax from a local file that exists, never from a CDN, and, where
  Chromium is installed, a headless browser with all network blocked renders the theorem's maths;
* the README test command and the one in .ci/run are the same line.

The build goes to a temporary directory; nothing is written into the repository.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
INTRO_HTML = Path("book") / "intro.html"
README_MARKER = "<!-- test-command -->"


# --------------------------------------------------------------------------------------------
# (a) notebooks are stored without outputs


def _book_notebooks() -> list[Path]:
    """Notebooks under book/: tracked or untracked-but-not-ignored when git knows, else a glob."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "book"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout
        paths = [REPO / line for line in out.splitlines() if line.endswith(".ipynb")]
        paths = [p for p in paths if p.exists()]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    return sorted(set(paths))


NOTEBOOKS = _book_notebooks()


def test_book_has_notebooks():
    assert NOTEBOOKS, f"no notebooks found under {BOOK}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_notebook_stored_without_outputs(path: Path):
    nb = json.loads(path.read_text(encoding="utf8"))
    assert nb.get("nbformat") == 4, f"{path}: nbformat {nb.get('nbformat')!r}, expected 4"
    dirty = [
        (i, len(cell.get("outputs", [])), cell.get("execution_count"))
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.relative_to(REPO)}: code cells stored with outputs/execution counts "
        f"(cell index, #outputs, execution_count): {dirty}. Clear them, e.g. "
        f"`jupyter nbconvert --clear-output --inplace {path.relative_to(REPO)}`"
    )


# --------------------------------------------------------------------------------------------
# (b) the book builds, warnings are errors


def _jupyter_book_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    pytest.skip("jupyter-book is not installed in this environment")


def _config_without_execution(dest: Path) -> Path:
    """A copy of _config.yml with execution switched off (everything else unchanged)."""
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    # unexecuted, no number is glued: tests/test_rendered_pages.py checks glue on the executed build
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["suppress_warnings"] = [*sphinx_config.get("suppress_warnings", []), "mystnb.glue"]
    path = dest / "_config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf8")
    return path


def test_config_matches_jupyter_book_schema():
    """jupyter-book only *prints* schema errors in _config.yml; make them fail here."""
    import yaml

    config_mod = pytest.importorskip("jupyter_book.config")
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
    config_mod.validate_yaml(config, raise_on_errors=True)
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["only_build_toc_files"] is True


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """Build the book once (no execution, -W -n --keep-going) into a temp dir; return html dir."""
    tmp = tmp_path_factory.mktemp("book")
    had_build_dir = (REPO / "_build").exists()
    cmd = [
        *_jupyter_book_cmd(), "build", str(REPO),
        "--path-output", str(tmp / "out"),
        "--config", str(_config_without_execution(tmp)),
        "--toc", str(REPO / "_toc.yml"),
        "-W", "-n", "--keep-going",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    print(f"book build (execution off) took {seconds:.1f} s")
    assert proc.returncode == 0, (
        f"`{' '.join(cmd)}` failed (rc={proc.returncode}) after {seconds:.0f} s\n"
        f"--- stdout (tail) ---\n{proc.stdout[-6000:]}\n--- stderr (tail) ---\n{proc.stderr[-6000:]}"
    )
    if not had_build_dir:
        assert not (REPO / "_build").exists(), "the test build wrote into the repository's _build"
    html = tmp / "out" / "_build" / "html"
    assert (html / "index.html").is_file(), f"no index.html in {html}"
    return html


@pytest.mark.slow
def test_book_builds_without_warnings(built_book: Path):
    assert (built_book / INTRO_HTML).is_file()
    for nb in NOTEBOOKS:
        page = built_book / nb.relative_to(REPO).with_suffix(".html")
        assert page.is_file(), f"{nb.relative_to(REPO)} was not built (is it in _toc.yml?)"


# --------------------------------------------------------------------------------------------
# (c) mathematics renders offline


class _ScriptSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script" and dict(attrs).get("src"):
            self.sources.append(dict(attrs)["src"])


@pytest.mark.slow
def test_mathjax_is_bundled_locally(built_book: Path):
    page = built_book / INTRO_HTML
    text = page.read_text(encoding="utf8")
    parser = _ScriptSources()
    parser.feed(text)
    mathjax = [s for s in parser.sources if "mathjax" in s.lower()]
    assert mathjax, f"{page} loads no MathJax script; scripts: {parser.sources}"
    remote = [s for s in mathjax if re.match(r"^(https?:)?//", s)]
    assert not remote, f"MathJax is loaded from the network: {remote}"
    cdn = re.findall(r"https?://[^\s\"']*mathjax[^\s\"']*", text, flags=re.IGNORECASE)
    assert not cdn, f"{page} mentions a MathJax URL: {cdn}"
    for src in mathjax:
        local = (page.parent / src.split("?")[0]).resolve()
        assert local.is_file(), f"MathJax script {src!r} -> {local} is missing from the build"
    assert 'class="proof theorem' in text, "intro has no {prf:theorem} to render"


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr"}


class _TheoremMath(HTMLParser):
    """Collects, inside every element whose classes include 'proof' and 'theorem', the number
    of MathJax containers and the text that is not inside one."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.theorem_depth: int | None = None
        self.mjx_depth: int | None = None
        self.theorems = 0
        self.containers = 0
        self.raw_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        self.stack.append(tag)
        classes = (dict(attrs).get("class") or "").split()
        if self.theorem_depth is None and {"proof", "theorem"} <= set(classes):
            self.theorem_depth = len(self.stack)
            self.theorems += 1
        if self.theorem_depth is not None and tag == "mjx-container":
            self.containers += 1
            if self.mjx_depth is None:
                self.mjx_depth = len(self.stack)

    def handle_endtag(self, tag):
        if tag in _VOID or not self.stack:
            return
        # pop up to the matching tag (tolerates sloppy nesting)
        while self.stack:
            depth = len(self.stack)
            top = self.stack.pop()
            if self.mjx_depth is not None and depth <= self.mjx_depth:
                self.mjx_depth = None
            if self.theorem_depth is not None and depth <= self.theorem_depth:
                self.theorem_depth = None
            if top == tag:
                break

    def handle_data(self, data):
        if self.theorem_depth is not None and self.mjx_depth is None:
            self.raw_text.append(data)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.mark.slow
def test_theorem_math_renders_in_headless_chromium_offline(built_book: Path, tmp_path: Path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the static check "
                    "test_mathjax_is_bundled_locally still ran")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        # no network at all: any http(s) request fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom", (built_book / INTRO_HTML).as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"chromium failed (rc={proc.returncode}): {proc.stderr[-3000:]}"
    dom = proc.stdout
    assert "<html" in dom.lower(), f"chromium dumped no DOM: {dom[:500]!r}"
    parser = _TheoremMath()
    parser.feed(dom)
    assert parser.theorems >= 1, "no {prf:theorem} block in the rendered intro"
    assert parser.containers >= 1, (
        "MathJax did not render the theorem's mathematics offline (no <mjx-container> inside it)"
    )
    raw = "".join(parser.raw_text)
    leftovers = [d for d in ("\\(", "\\)", "\\[", "\\]", "$") if d in raw]
    assert not leftovers, f"unrendered TeX delimiters {leftovers} in the theorem: {raw[:800]!r}"


# --------------------------------------------------------------------------------------------
# (d) the README test command is what CI runs


def _readme_test_command() -> str:
    """The single line in the fenced code block right after the README's test-command marker."""
    text = (REPO / "README.md").read_text(encoding="utf8")
    assert README_MARKER in text, f"README.md lacks the marker {README_MARKER!r}"
    after = text.split(README_MARKER, 1)[1]
    match = re.search(r"```[a-z]*\n(.*?)```", after, flags=re.DOTALL)
    assert match, "no fenced code block after the README test-command marker"
    lines = [ln.strip() for ln in match.group(1).splitlines() if ln.strip()]
    assert len(lines) == 1, f"the README test command must be one line, got {lines}"
    return lines[0]


def test_ci_runs_exactly_the_readme_test_command():
    command = _readme_test_command()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf8")
    ci_lines = [ln.strip() for ln in ci.splitlines()]
    assert command in ci_lines, (
        f".ci/run does not contain the README test command as a line of its own:\n  {command}"
    )
    assert "set -euo pipefail" in ci, ".ci/run must use `set -euo pipefail`"
    assert os.access(REPO / ".ci" / "run", os.X_OK), ".ci/run is not executable"
