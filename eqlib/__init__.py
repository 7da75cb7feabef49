"""eqlib — the library behind the book *Emergent Equivariance in Deep Ensembles* (Gerken & Kessel, 2024).

Modules, in the order data flows through them:

* ``eqlib.data``        data sets as arrays (toy problems; loaders for the experiments)
* ``eqlib.groups``      finite groups, their actions on arrays, representation checks
* ``eqlib.augment``     full-orbit augmentation and the index permutations π_g
* ``eqlib.models``      one architecture description → flax module and neural-tangents triple
* ``eqlib.ensemble``    M members trained together (optax, jit; vmap / unrolled / loop)
* ``eqlib.ntk``         the infinite-width ensemble mean μ_t and covariance Σ_t
* ``eqlib.metrics``     OSP, orbit spread, equivariance error, accuracy
* ``eqlib.runner``      presets, resumable runs, results files with provenance (``python -m eqlib``)

neural-tangents is imported only when a kernel is computed (``eqlib._nt``), so everything else
works on any recent JAX.
"""
from .augment import AugmentedData, augment_full_orbit, orbit_permutations, permutation_matrix
from .ensemble import EnsembleState, TrainConfig, ensemble_apply, init_ensemble, train_ensemble, train_in_chunks
from .groups import (CyclicRotations, Dihedral4, FiniteGroup, LatticeTranslations, MatrixGroup, MatrixSet,
                     ProductGroup, SpinFlip, Trivial, check_representation, get_group, octahedral_group,
                     random_rotations, representation_matrix)
from .metrics import OSP, accuracy, equivariance_error, orbit_outputs, orbit_same_prediction, orbit_spread
from .models import Architecture, cnn, mlp
from .ntk import EnsemblePrediction, ensemble_mean_cov, float64, kernels

__version__ = "0.1.0"
