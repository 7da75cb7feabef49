# Set-up for Colab, hidden on the book's pages. Where eqlib imports (a local install,
# the book build) it does nothing; elsewhere it clones the book's repository into
# ./eqbook and installs the pinned runtime stack and eqlib: jax 0.5.3 (CUDA 12 on GPU).
import importlib.util, os, shutil, subprocess, sys

REPO_URL = "https://github.com/eqlib/emergent-equivariance-book"
JAX = "0.5.3"
if importlib.util.find_spec("eqlib") is None:
    if "jax" in sys.modules and sys.modules["jax"].__version__ != JAX:
        raise RuntimeError(
            f"jax {sys.modules['jax'].__version__} is already imported in this kernel "
            f"and the book needs jax {JAX}: restart the runtime (Runtime > Restart "
            "session), then run this cell first.")
    src = os.path.abspath("eqbook")
    if not os.path.isdir(src):
        url = os.environ.get("EQLIB_BOOK_REPO", REPO_URL)
        subprocess.run(["git", "clone", "-q", "--depth", "1", url, src], check=True)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    cuda = [f"jax[cuda12]=={JAX}"] if shutil.which("nvidia-smi") else []
    subprocess.run(pip + ["-r", f"{src}/requirements-runtime.txt"] + cuda, check=True)
    nodeps = ["--no-deps", "-r", f"{src}/requirements-nodeps.txt", "-e", src]
    subprocess.run(pip + nodeps, check=True)
    sys.path.insert(0, src)
import eqlib
