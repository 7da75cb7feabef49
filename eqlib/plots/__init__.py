"""The book's figures: one function per figure, called in one line from a chapter.

Each function takes arrays (or a results dict) and returns a ``matplotlib.figure.Figure`` with
labelled axes; the chapter keeps only what teaches. Grouped by part of the book:

* :mod:`eqlib.plots.basics` — tour, groups, equivariance, augmentation;
* :mod:`eqlib.plots.kernels` — NTK, the theorem, what breaks it;
* :mod:`eqlib.plots.experiments` — Ising, FashionMNIST, histology (shared figures);
* :mod:`eqlib.plots.ising`, :mod:`eqlib.plots.fashion`, :mod:`eqlib.plots.histology` — the
  figures of one experiment chapter each (quick run beside the stored reference run, intervals).
"""
from .basics import *  # noqa: F401,F403
from .basics import __all__ as _basics
from .experiments import *  # noqa: F401,F403
from .experiments import __all__ as _experiments
from .fashion import *  # noqa: F401,F403
from .fashion import __all__ as _fashion
from .histology import *  # noqa: F401,F403
from .histology import __all__ as _histology
from .ising import *  # noqa: F401,F403
from .ising import __all__ as _ising
from .kernels import *  # noqa: F401,F403
from .kernels import __all__ as _kernels

__all__ = [*_basics, *_kernels, *_experiments, *_ising, *_fashion, *_histology]
