"""Exercises that check themselves: ``check(label, answer)`` says "correct" or what is wrong.

Every chapter ends with exercises (sphinx-exercise, labelled ``:label: <chapter>-ex-…``). Where
an exercise asks for a computation, the chapter gives it a *starter* cell (``answer = ...``) and a
*check* cell::

    from eqlib.exercises import check
    check("groups-ex-centre", answer)

``check`` prints one line — ``✓ correct``, or a hint that names what is wrong (type or shape,
a known slip such as a missing square or the wrong order of composition, the sign, too large or
too small) — and returns whether the answer is right. It never prints the expected value: each
checker recomputes that value from ``eqlib`` (cheaply, without training) and compares with a
tolerance. An unanswered starter (``answer = ...`` or ``None``) prints "no answer yet" and returns
``False`` without raising, so the book builds with the starters untouched.

Some exercises work on numbers the chapter measured (a member's spread, a relative spread); their
starter cells pass those numbers on as keyword arguments, ``check(label, answer, s1=s1)``, and the
checker verifies the computation from them. ``exercise_data(label)`` returns the inputs of the
exercises that need prepared data, so that starter and checker use the same ones.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

NO_ANSWER = "no answer yet — replace the `...` in the starter cell"
CORRECT = "correct"


class Verdict(NamedTuple):
    """The outcome of one check: right or not, and the one-line message shown to the student."""

    ok: bool
    message: str


class _Wrong(Exception):
    """Raised inside a checker for an answer that cannot be compared (type, shape, range)."""


Checker = Callable[..., Verdict]  # (answer, **given) -> Verdict
_REGISTRY: dict[str, Checker] = {}


def register(label: str) -> Callable[[Checker], Checker]:
    """Decorator: make ``checker(answer, **given) -> Verdict`` the check of exercise ``label``."""
    def add(checker: Checker) -> Checker:
        if label in _REGISTRY:
            raise ValueError(f"exercise {label!r} already has a checker")
        _REGISTRY[label] = checker
        return checker
    return add


def labels() -> tuple[str, ...]:
    """The exercise labels that have a checker, sorted."""
    return tuple(sorted(_REGISTRY))


def _unanswered(answer: Any) -> bool:
    """True for the starter's placeholder (``...``) and for ``None``."""
    return answer is None or answer is Ellipsis


def check(label: str, answer: Any, **given: Any) -> bool:
    """Check ``answer`` to exercise ``label``: print a one-line verdict, return whether it is right.

    ``given``: the chapter's measured numbers that the exercise starts from (see its starter cell).
    An unanswered starter prints "no answer yet" and returns ``False``; a wrong answer prints what
    is wrong, never the expected value. Raises ``KeyError`` only for an unknown label.
    """
    if label not in _REGISTRY:
        raise KeyError(f"no check for exercise {label!r}; exercises with a check: {labels()}")
    if _unanswered(answer):
        verdict = Verdict(False, NO_ANSWER)
    elif isinstance(answer, (tuple, list)) and any(_unanswered(a) for a in answer):
        verdict = Verdict(False, "not finished: a part of your answer is still `...` or None")
    else:
        try:
            verdict = _REGISTRY[label](answer, **given)
        except _Wrong as wrong:
            verdict = Verdict(False, str(wrong))
    mark = "✓" if verdict.ok else ("…" if verdict.message == NO_ANSWER else "✗")
    print(f"{mark} {verdict.message}")
    return verdict.ok


# ------------------------------------------------------------------------------ helpers

def _number(value: Any, what: str) -> float:
    """``value`` as a float (int, float, numpy scalar or 0-d/size-1 array), else ``_Wrong``."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        raise _Wrong(f"{what} should be a number, got {type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Wrong(f"{what} should be a number, got {type(value).__name__}") from None
    if arr.size != 1:
        raise _Wrong(f"{what} should be a single number, got an array of shape {arr.shape}")
    number = float(arr.reshape(()))
    if math.isnan(number):
        raise _Wrong(f"{what} is NaN")
    return number


def _parts(answer: Any, names: tuple[str, ...]) -> tuple:
    """Split a tuple/list answer into ``len(names)`` parts, else ``_Wrong`` naming the parts."""
    if not isinstance(answer, (tuple, list)) or len(answer) != len(names):
        raise _Wrong(f"the answer should be a tuple ({', '.join(names)}), "
                     f"got {type(answer).__name__}"
                     + (f" of length {len(answer)}" if isinstance(answer, (tuple, list)) else ""))
    return tuple(answer)


def _array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (a trailing axis of length 1 is dropped)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Wrong(f"{what} should be an array of numbers, got {type(value).__name__}") from None
    if arr.shape != shape and arr.shape[-1:] == (1,) and arr.shape[:-1] == shape:
        arr = arr[..., 0]
    if arr.shape != shape:
        raise _Wrong(f"{what} should have shape {shape}, got {arr.shape}")
    if np.isnan(arr).any():
        raise _Wrong(f"{what} contains NaN")
    return arr


def _close(got: float, expected: float, rtol: float, atol: float = 0.0) -> bool:
    """``|got − expected| ≤ atol + rtol·|expected|`` (infinities equal only to themselves)."""
    if math.isinf(expected) or math.isinf(got):
        return got == expected
    return abs(got - expected) <= atol + rtol * abs(expected)


def _compare(got: float, expected: float, what: str, rtol: float,
             slips: Iterable[tuple[float, str]] = (), atol: float = 0.0) -> str | None:
    """None if ``got`` is right; else a hint: a known slip, the sign, or too large / too small."""
    if _close(got, expected, rtol, atol):
        return None
    for value, hint in slips:
        if _close(got, value, rtol, atol):
            return f"{what}: {hint}"
    if expected != 0 and _close(-got, expected, rtol, atol):
        return f"{what} has the wrong sign"
    return f"{what} is too {'large' if got > expected else 'small'}"


def _verdict(problems: list[str]) -> Verdict:
    """Correct when there are no problems; else all of them, joined on one line."""
    return Verdict(True, CORRECT) if not problems else Verdict(False, "; ".join(problems))


def _members_needed(single: float, target: float) -> float:
    """Members M with ``single/√M = target``: the 1/√M law of a finite ensemble."""
    return (single / target) ** 2


def _check_members(answer: Any, single: float, target: float, quantity: str) -> Verdict:
    """Shared check for "how many members for a target violation": M = (single/target)²."""
    single = _number(single, f"the single-member {quantity} passed to check")
    members = _number(answer, "the number of members")
    expected = _members_needed(single, target)
    slips = [(single / target, f"the {quantity} falls like 1/√M, not like 1/M — "
                               "solve single/√M = target for M"),
             ((target / single) ** 2, "inverted: M grows when the target gets smaller"),
             (math.sqrt(expected), "you found √M; square it")]
    # whole members: allow rounding up or down
    problem = _compare(members, expected, "the number of members", rtol=0.02, atol=1.0,
                       slips=slips)
    return _verdict([problem] if problem else [])


# ----------------------------------------------------------------------- exercise data

def exercise_data(label: str) -> tuple:
    """The prepared inputs of exercise ``label`` (the same ones its checker uses)."""
    if label == "ntk-ex-interpolation":
        # three distinct inputs; the fourth repeats the first with another target
        x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]], dtype=np.float32)
        y = np.array([[1.0], [-1.0], [0.5], [0.0]], dtype=np.float32)
        return x, y
    if label == "theorem-ex-stabiliser":
        zero, target = np.zeros((1, 1), np.float32), np.array([[0.75]], np.float32)
        probes = np.array([[0.0], [1.0], [-1.0]], np.float32)
        times = (1.0, 100.0, np.inf)
        return zero, target, probes, times
    raise KeyError(f"exercise {label!r} has no prepared data")


# ---------------------------------------------------------------------------- checkers

@register("ex-tour-members")
def _tour_members(answer: Any) -> Verdict:
    """How many times smaller the augmented ensemble's orbit spread gets from M = 8 to 128."""
    small, large = 8, 128
    got = _number(answer, "the ratio spread(M=8) / spread(M=128)")
    expected = math.sqrt(large / small)
    slips = [(large / small, "that is how the *variance* of the ensemble mean shrinks; the "
                             "orbit spread is a standard deviation"),
             (1 / expected, "inverted: give how many times *smaller* the spread gets "
                            "(a number above 1)"),
             (small / large, "inverted, and that is the variance's law, not the spread's"),
             (1.0, "with full augmentation the residual does shrink with M — "
                   "there is no floor")]
    problem = _compare(got, expected, "the ratio", rtol=0.05, slips=slips)
    return _verdict([problem] if problem else [])


def _element_indices(centre: Any, labels_: tuple[str, ...]) -> set[int]:
    """Element indices from an iterable of indices or of labels such as ``"r90°"``."""
    if isinstance(centre, (str, bytes)) or not isinstance(centre, Iterable):
        raise _Wrong("the centre should be a collection of elements (indices 0…7 or labels "
                     f"like 'r90°'), got {type(centre).__name__}")
    out = set()
    for g in centre:
        if isinstance(g, str):
            if g not in labels_:
                raise _Wrong(f"{g!r} is not an element label of D4; labels: {labels_}")
            out.add(labels_.index(g))
        else:
            index = _number(g, "an element of the centre")
            if index != int(index) or not 0 <= index < len(labels_):
                raise _Wrong(f"element {g!r} is not an index 0…{len(labels_) - 1}")
            out.add(int(index))
    return out


@register("groups-ex-centre")
def _groups_centre(answer: Any) -> Verdict:
    """(number of commuting ordered pairs, centre of D4) from the Cayley table."""
    from .groups import Dihedral4

    d4 = Dihedral4()
    t = np.asarray(d4.table)
    n = d4.order
    count, centre = _parts(answer, ("count", "centre"))
    count = _number(count, "the count")
    expected_count = int((t == t.T).sum())
    off_diagonal = (expected_count - n) // 2
    problems = []
    problem = _compare(count, expected_count, "the count of commuting pairs", rtol=0.0,
                       slips=[(n * n, "that counts all pairs — keep only those with "
                                      "g∘h = h∘g"),
                              (off_diagonal, "count ordered pairs (g, h), both orders "
                                             "and g = h included"),
                              (off_diagonal + n, "count ordered pairs: (g, h) and (h, g) "
                                                 "are two pairs")])
    if problem:
        problems.append(problem)
    got = _element_indices(centre, tuple(d4.labels))
    central = {g for g in range(n) if (t[g] == t[:, g]).all()}
    for g in sorted(got - central):
        h = next(h for h in range(n) if t[g, h] != t[h, g])
        problems.append(f"{d4.labels[g]} is not in the centre: it does not commute with "
                        f"{d4.labels[h]}")
    if central - got:
        hint = (" (the identity commutes with everything)" if d4.identity in central - got
                else "")
        problems.append(f"your centre misses an element{hint}")
    return _verdict(problems)


@register("equivariance-ex-d4-chance")
def _equivariance_d4_chance(answer: Any) -> Verdict:
    """(chance OSP, chance share of consistent orbits) for D4 and ten equally likely classes."""
    from .groups import Dihedral4

    order, classes = Dihedral4().order, 10
    p = np.full(classes, 1 / classes)
    osp, share = _parts(answer, ("expected OSP", "consistent share"))
    osp, share = _number(osp, "the OSP"), _number(share, "the consistent share")
    expected_osp = float(1 + (order - 1) * (p ** 2).sum())
    expected_share = float((p ** order).sum())
    problems = []
    problem = _compare(osp, expected_osp, "the OSP", rtol=1e-3, slips=[
        (expected_osp / order, "that is a fraction of |G|; the OSP counts group elements"),
        (1 + order * (p ** 2).sum(), "the identity always agrees with itself: it adds 1, "
                                     "the other |G| − 1 elements agree by chance"),
        (order / classes, "every element but the identity agrees by chance with "
                          "probability Σ p_c², and the identity always agrees"),
        (1 + 3 * (p ** 2).sum(), "that is the chance level for C4; D4 has more elements")])
    if problem:
        problems.append(problem)
    problem = _compare(share, expected_share, "the consistent share", rtol=1e-2, slips=[
        (0.0, "the simulation finds no consistent orbit because the share is tiny — "
              "compute it from the formula"),
        (p[0] ** order, "sum over the classes: all |G| predictions may agree on any class"),
        (classes * p[0] ** (order - 1), "all |G| predictions must be the same class, "
                                        "the identity's included")])
    if problem:
        problems.append(problem)
    return _verdict(problems)


@register("augmentation-ex-d4-blocks")
def _augmentation_d4_blocks(answer: Any) -> Verdict:
    """The (8, 8) table k with block (h, h') of the D4-augmented Gram matrix = B(k[h, h'])."""
    from .groups import Dihedral4

    d4 = Dihedral4()
    n = d4.order
    got = _array(answer, (n, n), "the block-index table")
    if not np.all((got == np.round(got)) & (0 <= got) & (got < n)):
        raise _Wrong(f"the block-index table should hold element indices 0…{n - 1}")
    got = got.astype(int)
    expected = np.array([[d4.compose(d4.inverse(h), h2) for h2 in range(n)]
                         for h in range(n)])
    if np.array_equal(got, expected):
        return Verdict(True, CORRECT)
    circulant = (np.arange(n)[None] - np.arange(n)[:, None]) % n
    other_order = np.array([[d4.compose(h2, d4.inverse(h)) for h2 in range(n)]
                            for h in range(n)])
    inverted = np.array([[d4.inverse(e) for e in row] for row in expected])
    wrong = np.argwhere(got != expected)
    h, h2 = wrong[0]
    if not np.array_equal(got[0], np.arange(n)):
        hint = "row h = 0 should be 0, 1, …, 7: block (0, h') is B(h') itself"
    elif np.array_equal(got, circulant):
        hint = ("that is the circulant pattern h' − h mod 8, which holds for the commutative "
                "C4 but not for D4")
    elif np.array_equal(got, other_order):
        hint = "the order of composition is reversed"
    elif np.array_equal(got, inverted):
        hint = "you have the inverse element: B(g⁻¹) is the transpose of B(g), not B(g)"
    else:
        hint = f"e.g. block (h, h') = ({h}, {h2}) is not B of your entry"
    return Verdict(False, f"{len(wrong)} of {n * n} entries are wrong; {hint}")


@register("ntk-ex-interpolation")
def _ntk_interpolation(answer: Any) -> Verdict:
    """μ_∞ at training inputs that repeat one input with two targets (exercise_data)."""
    x, y = exercise_data("ntk-ex-interpolation")
    n = len(x)
    got = _array(answer, (n,), f"μ_∞ at the {n} training inputs")
    # equal inputs: Θ has equal rows, and μ_∞(X) = ΘΘ⁺Y averages the targets of the copies
    first = {}
    groups = np.array([first.setdefault(row.tobytes(), i) for i, row in enumerate(x)])
    expected = np.array([y[groups == g, 0].mean() for g in groups])
    wrong = ~np.isclose(got, expected, rtol=1e-3, atol=1e-3)
    if not wrong.any():
        return Verdict(True, CORRECT)
    repeated = np.array([(groups == g).sum() > 1 for g in groups])
    problems = []
    if np.allclose(got, y[:, 0], atol=1e-3):
        problems.append("these are the targets: but the first and the last input are the "
                        "same point, and a function takes one value there")
    elif any(not np.isclose(got[i], got[j], atol=1e-3)
             for i in range(n) for j in range(n) if i < j and groups[i] == groups[j]):
        problems.append("your values at the repeated input differ — "
                        "a function takes one value at one input")
    elif (wrong & repeated).any():
        problems.append("the value at the repeated input is wrong")
    if (wrong & ~repeated).any():
        problems.append(f"wrong at the inputs {np.flatnonzero(wrong & ~repeated).tolist()}, "
                        "which appear only once")
    return _verdict(problems)


_stabiliser_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _stabiliser_expected() -> tuple[np.ndarray, np.ndarray]:
    """μ_t at the probes for the invariant and the odd target: each ``(times, probes)``."""
    if "mu" not in _stabiliser_cache:
        from .augment import augment_full_orbit
        from .groups import SpinFlip
        from .models import mlp
        from .ntk import ensemble_mean_cov

        zero, target, probes, times = exercise_data("theorem-ex-stabiliser")
        flip = SpinFlip()
        means = []
        for act_y in (None, flip.act):
            aug = augment_full_orbit(zero, target, flip, act_y=act_y)
            p = ensemble_mean_cov(mlp([64], 1).kernel_fn, aug.x, aug.y, probes, times)
            means.append(np.asarray(p.mean[..., 0], np.float64))
        _stabiliser_cache["mu"] = (means[0], means[1])
    return _stabiliser_cache["mu"]


@register("theorem-ex-stabiliser")
def _theorem_stabiliser(answer: Any) -> Verdict:
    """(μ_t for the invariant, for the odd target) at x ∈ {0, 1, −1}, t ∈ {1, 100, ∞}: (3, 3)."""
    mu_inv, mu_odd = _parts(answer, ("mu_invariant", "mu_odd"))
    *_, probes, times = exercise_data("theorem-ex-stabiliser")
    shape = (len(times), len(probes))
    mu_inv = _array(mu_inv, shape, "mu_invariant (times × probes)")
    mu_odd = _array(mu_odd, shape, "mu_odd (times × probes)")
    exp_inv, exp_odd = _stabiliser_expected()
    close = lambda a, b: np.allclose(a, b, rtol=1e-3, atol=1e-4)
    if close(mu_inv, exp_inv) and close(mu_odd, exp_odd):
        return Verdict(True, CORRECT)
    if close(mu_inv, exp_odd) and close(mu_odd, exp_inv):
        return Verdict(False, "your two predictions are swapped")
    problems = []
    if not close(mu_inv, exp_inv):
        if close(mu_inv, -exp_inv):
            problems.append("mu_invariant has the wrong sign")
        elif not np.allclose(mu_inv[:, 1], mu_inv[:, 2], atol=1e-4):
            problems.append("mu_invariant should be even: compare x = 1 with x = −1")
        else:
            problems.append("mu_invariant is wrong — augment with the trivial act_y and "
                            "evaluate with mlp([64], 1).kernel_fn at the given times")
    if not close(mu_odd, exp_odd):
        if close(mu_odd, exp_inv):
            problems.append("mu_odd equals the invariant-target prediction: augment with "
                            "act_y=Z2.act, so that the copy −x gets the target −y")
        else:
            problems.append("mu_odd is wrong — what can an odd function be at 0, and what "
                            "does Θ(x, X) Y give when the two copies carry y and −y?")
    return _verdict(problems)


@register("what_breaks_it-ex-members")
def _what_breaks_it_members(answer: Any, *, single: float) -> Verdict:
    """Members for an equivariance error of 0.01, from one member's measured error ``single``."""
    return _check_members(answer, single, 0.01, "equivariance error")


@register("ising-ex-members")
def _ising_members(answer: Any, *, s1: float) -> Verdict:
    """Members for an orbit spread of 0.01, from one member's measured spread ``s1``."""
    return _check_members(answer, s1, 0.01, "orbit spread")


@register("fashion_mnist-ex-chance")
def _fashion_mnist_chance(answer: Any) -> Verdict:
    """Chance OSP under C4 of a classifier with class shares 0.9 / 0.05 / 0.05."""
    from .groups import CyclicRotations

    order = CyclicRotations(4).order
    shares = np.array([0.9, 0.05, 0.05])
    got = _number(answer, "the chance OSP")
    expected = float(1 + (order - 1) * (shares ** 2).sum())
    slips = [(1 + (order - 1) / len(shares), "that is the chance level for equally likely "
                                             "classes; these are far from equal"),
             (1 + (order - 1) / 10, "that assumes ten equally likely classes; use the "
                                    "shares the network actually predicts"),
             (1 + (order - 1) * shares[0] ** 2, "include the classes Trouser and Sandal in "
                                                "Σ p_c²"),
             (1 + (order - 1) * shares[0], "square the shares: two independent predictions "
                                           "agree on class c with probability p_c²"),
             (order * (shares ** 2).sum(), "the identity always agrees with itself: it adds "
                                           "1, only the other |G| − 1 agree by chance"),
             (expected / order, "that is a fraction of |G|; the OSP counts group elements")]
    problem = _compare(got, expected, "the chance OSP", rtol=1e-3, slips=slips)
    return _verdict([problem] if problem else [])


@register("ex-histology-rate")
def _histology_rate(answer: Any, *, r_plain: float, r_aug: float, members: int) -> Verdict:
    """(s, members needed): the systematic share of the unaugmented ensemble's spread.

    ``r_plain``, ``r_aug``: relative orbit spreads at ``members`` members without and with
    augmentation; r(M)² = s² + (1 − s²)/M, and the unaugmented ensemble needs the M with
    r(M) = r_aug — none if r_aug ≤ s (answer ``np.inf``).
    """
    r_plain = _number(r_plain, "r_plain passed to check")
    r_aug = _number(r_aug, "r_aug passed to check")
    size = _number(members, "members passed to check")
    s, needed = _parts(answer, ("s", "members needed"))
    s, needed = _number(s, "s"), _number(needed, "the members needed")
    s2 = (size * r_plain ** 2 - 1) / (size - 1)
    if s2 < 0:
        raise _Wrong("r_plain is below 1/√M: no systematic part to estimate")
    expected_s = math.sqrt(s2)
    expected_needed = (math.inf if r_aug <= expected_s
                       else (1 - s2) / (r_aug ** 2 - s2))
    problems = []
    problem = _compare(s, expected_s, "s", rtol=0.01, slips=[
        (s2, "that is s²; take the square root"),
        (r_plain, "that is r(M) itself; solve r(M)² = s² + (1 − s²)/M for s"),
        (math.sqrt(max(r_plain ** 2 - 1 / size, 0.0)),
         "the fluctuating part is (1 − s²)/M, not 1/M")])
    if problem:
        problems.append(problem)
    if math.isinf(expected_needed) and not math.isinf(needed):
        problems.append("the members needed: compare r_aug with the floor s — can r(M) of "
                        "the unaugmented ensemble ever get below s?")
    elif math.isinf(needed) and not math.isinf(expected_needed):
        problems.append("the members needed: r_aug lies above the floor s here, so a finite "
                        "ensemble reaches it")
    elif not math.isinf(needed):
        problem = _compare(needed, expected_needed, "the members needed", rtol=0.02,
                           atol=1.0)
        if problem:
            problems.append(problem)
    return _verdict(problems)
