"""Every chapter as a reader sees it: the book built *with execution*, each page in Chromium.

The fixture runs ``jupyter-book build`` exactly as the README does (every notebook executed
afresh; experiments load their results when an earlier run left them under ``results/``),
except that a cell that raises does not stop the build: its traceback lands on its page, where
the per-chapter test below finds it and names the chapter. This build is the suite's
execution check of the notebooks.

For each chapter page, headless Chromium (no network) lays the page out in a 1440 px window,
where the theme's text column reaches its full width (about 88 characters of code; at 1280 px it
holds about 80), and a small script reports what a reader would meet:

* a traceback (an error output of a cell);
* a code cell, or a text output, that scrolls sideways (``scrollWidth > clientWidth``);
* the figures: every image in a cell output decodes, and there are at least as many as the
  chapter's code calls ``plots.<figure>(...)``;
* an absolute path of the build machine anywhere in the page's text.

Without Chromium the browser checks are skipped with their reason; the static ones still run.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted([*(REPO / "book").glob("*.ipynb"), *(REPO / "book").glob("*.md")])
WINDOW = "1440,900"  # CSS pixels: the theme's full-width column (about 88 code characters)
MACHINE_PATHS = (str(REPO), "/tmp/", "/root/", "/home/", "/work/", "site-packages")

# Runs in the page after load; leaves its findings as JSON in <pre id="eqlib-page-check">.
_CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => { setTimeout(() => {
  const out = {overflow: [], images: [], tracebacks: 0, column: 0};
  const main = document.querySelector("main") || document.body;
  out.column = main.clientWidth;
  document.querySelectorAll("div.cell div.highlight pre, div.cell_output pre").forEach((el) => {
    if (el.scrollWidth > el.clientWidth + 1) {
      out.overflow.push({where: el.closest(".cell_input") ? "code" : "output",
                         scroll: el.scrollWidth, client: el.clientWidth,
                         text: el.textContent.slice(0, 120)});
    }
  });
  document.querySelectorAll("div.cell_output img").forEach((img) => {
    out.images.push(img.complete ? img.naturalWidth : 0);
  });
  out.tracebacks = document.querySelectorAll(".output.traceback, .traceback").length;
  const pre = document.createElement("pre");
  pre.id = "eqlib-page-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 500); });
</script>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _executed_config(dest: Path) -> Path:
    """_config.yml with errors kept on their page instead of failing the whole build."""
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
    assert config["execute"]["execute_notebooks"] == "force"
    config["execute"].update(allow_errors=True, raise_on_error=False)
    # the suite runs on two workers (README: -n 2): a cell may get half the cores it has in a
    # plain build, so it gets twice the per-cell time of _config.yml
    config["execute"]["timeout"] = 2 * config["execute"]["timeout"]
    path = dest / "_config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf8")
    return path


@pytest.fixture(scope="module")
def executed_book(tmp_path_factory) -> Path:
    exe = Path(sys.executable).parent / "jupyter-book"
    if not exe.exists():
        pytest.skip("jupyter-book is not installed in this environment")
    tmp = tmp_path_factory.mktemp("executed")
    cmd = [str(exe), "build", str(REPO), "--path-output", str(tmp / "out"),
           "--config", str(_executed_config(tmp)), "--toc", str(REPO / "_toc.yml")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=3600)
    print(f"executed book build took {time.perf_counter() - start:.0f} s")
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    html = tmp / "out" / "_build" / "html"
    (html.parent / "build.log").write_text(proc.stdout + "\n" + proc.stderr, encoding="utf8")
    return html


def test_every_glued_number_resolves(executed_book):
    """A {glue:text} role whose key the run did not glue is a warning, not an error, in myst-nb:
    here it fails, so a renamed or missing result cannot leave a hole in the prose."""
    log = (executed_book.parent / "build.log").read_text(encoding="utf8")
    missing = [line for line in log.splitlines() if "[mystnb.glue" in line]
    assert not missing, "glue references that did not resolve:\n" + "\n".join(missing[:20])


def _page(html: Path, chapter: Path) -> Path:
    page = html / "book" / f"{chapter.stem}.html"
    assert page.is_file(), f"{chapter.name} was not built"
    return page


def _figure_calls(chapter: Path) -> int:
    if chapter.suffix != ".ipynb":
        return 0
    cells = json.loads(chapter.read_text(encoding="utf8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return len(re.findall(r"\bplots\.[a-z_0-9]+\(", code))


def _browser_report(page: Path, tmp_path: Path) -> dict:
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    probe = page.with_name(f"_probe_{page.name}")
    text = page.read_text(encoding="utf8")
    probe.write_text(text.replace("</body>", _CHECK_SCRIPT + "</body>", 1), encoding="utf8")
    try:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={WINDOW}",
             "--virtual-time-budget=15000", f"--user-data-dir={tmp_path / 'profile'}",
             "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=300)
    finally:
        probe.unlink(missing_ok=True)
    assert proc.returncode == 0, f"chromium failed: {proc.stderr[-2000:]}"
    found = re.search(r'<pre id="eqlib-page-check">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, "the page check script did not run"
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1)))


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_page_has_no_traceback_and_no_machine_path(executed_book, chapter):
    text = _page(executed_book, chapter).read_text(encoding="utf8")
    raised = "Traceback (most recent call last)" in text or 'class="output traceback' in text
    assert not raised, f"{chapter.name}: a cell raised; its traceback is on the page"
    leaked = [p for p in MACHINE_PATHS if p in text]
    assert not leaked, f"{chapter.name}: the page shows machine paths {leaked}"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_page_in_chromium_has_its_figures_and_nothing_scrolls_sideways(
        executed_book, chapter, tmp_path):
    report = _browser_report(_page(executed_book, chapter), tmp_path)
    assert report["tracebacks"] == 0, f"{chapter.name}: {report['tracebacks']} traceback(s)"
    assert all(w > 0 for w in report["images"]), f"{chapter.name}: an image did not load"
    expected = _figure_calls(chapter)
    assert len(report["images"]) >= expected, (
        f"{chapter.name}: {len(report['images'])} figure(s) on the page, but the chapter "
        f"draws {expected}")
    assert not report["overflow"], (
        f"{chapter.name}: {len(report['overflow'])} block(s) scroll sideways in a "
        f"{report['column']} px column: {report['overflow'][:3]}")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if c.suffix == ".ipynb"],
                         ids=lambda p: p.stem)
def test_every_figure_is_saved_for_slides_under_a_stable_name(executed_book, chapter):
    """eqlib/sphinx_figures.py: figures/<chapter>-figNN.png, one per figure on the page."""
    text = _page(executed_book, chapter).read_text(encoding="utf8")
    on_page = len(re.findall(r'<img [^>]*src="[^"]*_images/', text))
    saved = sorted(p.name for p in (executed_book / "figures").glob(f"{chapter.stem}-fig*"))
    assert saved == [f"{chapter.stem}-fig{i:02d}.png" for i in range(1, on_page + 1)]
    assert on_page >= _figure_calls(chapter)
    assert all(f in (executed_book / "figures" / "index.html").read_text() for f in saved)
