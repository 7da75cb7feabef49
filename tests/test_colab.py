"""The Colab path, executed: the set-up cell in an environment that looks like Colab's.

Colab's default runtime (late 2026) has a *newer* jax/flax/optax/numpy preinstalled and no
eqlib. This test builds such an environment (a fresh virtual environment with jax 0.7.2,
flax 0.11.2, optax 0.2.8, numpy 2.1, plus the Jupyter kernel machinery Colab has; Python is
this machine's), then, in that environment's kernel and in a scratch folder that stands for
``/content``:

1. a kernel that has already imported the preinstalled jax runs the set-up cell: it must stop
   with the message to restart the runtime, installing nothing;
2. the tour is executed top to bottom in a fresh kernel: its set-up cell clones the repository
   (``$EQLIB_BOOK_REPO`` points at a one-commit snapshot of this working tree: its tracked and
   untracked-but-not-ignored files, as a clean clone of the commit has them) and installs the
   pinned runtime stack; the measured time of that cell is printed;
3. in that runtime the bundled data verify against their checksums, a fold of the histology
   task loads, and the stored reference runs load (the chapters themselves run in the book build);
4. the environment then has jax/jaxlib 0.5.3, the pinned flax and optax, eqlib from the clone,
   and none of the book/test tools that Colab manages itself (jupyter-book, sphinx, nbval, pytest).

It needs the package index (as ``.ci/run`` has it) and takes several minutes. The GPU branch
of the cell (``jax[cuda12]`` when ``nvidia-smi`` exists) is not exercised here: no GPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLAB_PREINSTALLED = ["jax==0.7.2", "jaxlib==0.7.2", "flax==0.11.2", "optax==0.2.8",
                      "numpy==2.1.3", "scipy", "matplotlib", "tqdm", "ipykernel", "nbclient",
                      "nbformat"]
NOT_AT_RUN_TIME = ("jupyter-book", "jupyter_book", "sphinx", "nbval", "pytest")

# Runs inside the Colab-like environment: executes a notebook with that environment's kernel.
_EXECUTE = r"""
import json, sys, time
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path, cwd, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                        resources={"metadata": {"path": cwd}}, record_timing=True)
error = None
start = time.perf_counter()
try:
    client.execute()
except CellExecutionError as err:
    error = str(err)
times = []
for cell in nb.cells:
    t = cell.get("metadata", {}).get("execution", {})
    times.append([t.get("iopub.execute_input"), t.get("shell.execute_reply")])
json.dump({"error": error, "seconds": time.perf_counter() - start, "times": times},
          sys.stdout)
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _cell_seconds(times: list) -> float:
    from datetime import datetime

    start, end = (datetime.fromisoformat(s.replace("Z", "+00:00")) for s in times)
    return (end - start).total_seconds()


def _snapshot_repository(dest: Path) -> Path:
    """A git repository at ``dest`` whose one commit is this working tree (ignored files left out)."""
    import shutil

    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  cwd=REPO).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-C", str(dest), "-c", "user.name=eqlib-test", "-c", "user.email=test@invalid"]
    _run(git[:3] + ["init", "-q", "-b", "main"])
    _run(git + ["add", "-A"])
    _run(git + ["commit", "-q", "-m", "snapshot of the working tree"])
    return dest


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> dict:
    """A Colab-like virtual environment and a scratch /content folder."""
    base = tmp_path_factory.mktemp("colab")
    venv = base / "venv"
    start = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          *COLAB_PREINSTALLED], timeout=1800)
    print(f"Colab-like environment built in {time.perf_counter() - start:.0f} s")
    content = base / "content"
    content.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EQLIB_", "PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    origin = _snapshot_repository(base / "origin")
    env.update(EQLIB_BOOK_REPO=origin.as_uri(), EQLIB_CACHE=str(base / "cache"),
               MPLBACKEND="agg", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return {"python": python, "content": content, "env": env, "base": base}


def _execute(colab: dict, notebook: Path, timeout: int = 1200) -> dict:
    script = colab["base"] / "execute.py"
    script.write_text(_EXECUTE, encoding="utf8")
    proc = _run([str(colab["python"]), str(script), str(notebook), str(colab["content"]),
                 str(timeout)], env=colab["env"], cwd=colab["content"], timeout=3 * timeout)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _installed(colab: dict) -> dict[str, str]:
    proc = _run([str(colab["python"]), "-m", "pip", "list", "--format", "json",
                 "--disable-pip-version-check"], env=colab["env"])
    return {p["name"].lower(): p["version"] for p in json.loads(proc.stdout)}


def _notebook_with(colab: dict, name: str, cells: list[str]) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = colab["base"] / name
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_setup_cell_stops_when_another_jax_is_already_imported(colab):
    setup = (REPO / "book" / "setup_cell.py").read_text(encoding="utf8")
    result = _execute(colab, _notebook_with(colab, "jax_first.ipynb", ["import jax", setup]))
    assert result["error"] is not None and "restart the runtime" in result["error"], result
    assert "jax 0.7.2 is already imported" in result["error"]
    assert not (colab["content"] / "eqbook").exists(), "it cloned before stopping"
    assert _installed(colab)["jax"] == "0.7.2", "it installed before stopping"


@pytest.mark.slow
def test_tour_and_bundled_data_on_a_colab_like_runtime(colab):
    result = _execute(colab, REPO / "book" / "tour.ipynb")
    assert result["error"] is None, result["error"][-4000:]
    setup_index = next(i for i, c in enumerate(
        json.loads((REPO / "book" / "tour.ipynb").read_text())["cells"])
        if c["cell_type"] == "code")
    setup_seconds = _cell_seconds(result["times"][setup_index])
    print(f"set-up cell (clone + pinned runtime install) took {setup_seconds:.0f} s; "
          f"the whole tour {result['seconds']:.0f} s")
    assert (colab["content"] / "eqbook" / "data" / "SHA256SUMS").is_file()

    installed = _installed(colab)
    assert installed["jax"] == installed["jaxlib"] == "0.5.3"
    pins = dict(line.split("==") for line in
                (REPO / "requirements-runtime.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert installed["flax"] == pins["flax"] and installed["optax"] == pins["optax"]
    assert installed["neural-tangents"] == "0.6.5"
    assert installed["eqlib"]
    assert not [n for n in installed if n.startswith(NOT_AT_RUN_TIME)], sorted(installed)

    # the bundled data and the stored runs come with the clone: checksummed patches, a fold of
    # the histology task, a stored reference run (the chapters themselves run in the book build)
    cells = ["from eqlib.data.bundled import verify_bundled\n"
             "verify_bundled('histology'); verify_bundled('mnist')",
             "from eqlib.experiments.histology import QUICK, crop_table, fold_data\n"
             "data = fold_data(QUICK, crop_table(QUICK), 0)\n"
             "assert data['x'].ndim == 4 and len(data['x']) == len(data['y']) > 0",
             "from eqlib.runner import stored_results\n"
             "for name in ('ising', 'fashion_mnist', 'histology'):\n"
             "    assert stored_results(name, 'reference')[1]['preset'] == 'reference'"]
    result = _execute(colab, _notebook_with(colab, "data.ipynb", cells))
    assert result["error"] is None, result["error"][-4000:]
    print(f"bundled data and stored runs on the Colab-like runtime: {result['seconds']:.0f} s")
