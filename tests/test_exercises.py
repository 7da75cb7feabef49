"""Exercises that check themselves (eqlib.exercises): every check accepts the reference solution,
rejects a typical wrong answer with a message that says what is wrong but not the expected value,
and tolerates the untouched starter; every chapter has at least one such exercise, with a starter
cell and a check cell right after the exercise's solution.

The reference solutions live only here: the student edition is built from book/ without solutions,
and the tests are not part of the book.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from eqlib import exercises
from eqlib.exercises import NO_ANSWER, check, exercise_data

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = ("tour", "groups", "equivariance", "augmentation", "ntk", "theorem",
            "what_breaks_it", "ising", "fashion_mnist", "histology")


# ------------------------------------------------------------------ reference solutions

def _d4_blocks_by_kernel() -> np.ndarray:
    """The block-index table measured on the NTK Gram matrix, as the exercise asks."""
    from eqlib.augment import augment_full_orbit
    from eqlib.data.toy import blob_images
    from eqlib.groups import Dihedral4
    from eqlib.models import mlp
    from eqlib.ntk import kernels

    d4 = Dihedral4()
    x = blob_images(6, size=6, blobs=2, seed=4)
    aug = augment_full_orbit(x, np.zeros((6, 1)), d4)
    _, theta = kernels(mlp([16], 1).kernel_fn, aug.x)
    blocks = theta.reshape(8, 6, 8, 6).transpose(0, 2, 1, 3)
    table = np.array([[[k for k in range(8) if np.allclose(blocks[h, h2], blocks[0, k])]
                       for h2 in range(8)] for h in range(8)])
    assert table.shape == (8, 8, 1), "the blocks B(k) should be distinct"
    return table[..., 0]


def _ntk_interpolation_reference() -> np.ndarray:
    from eqlib.models import mlp
    from eqlib.ntk import ensemble_mean_cov

    x, y = exercise_data("ntk-ex-interpolation")
    return ensemble_mean_cov(mlp([64], 1).kernel_fn, x, y, x, [np.inf]).mean[0]


def _stabiliser_reference(odd_act: bool = True) -> tuple[np.ndarray, np.ndarray]:
    from eqlib.augment import augment_full_orbit
    from eqlib.groups import SpinFlip
    from eqlib.models import mlp
    from eqlib.ntk import ensemble_mean_cov

    z2 = SpinFlip()
    zero, target, probes, times = exercise_data("theorem-ex-stabiliser")
    means = []
    for act_y in (None, z2.act if odd_act else None):
        aug = augment_full_orbit(zero, target, z2, act_y=act_y)
        p = ensemble_mean_cov(mlp([64], 1).kernel_fn, aug.x, aug.y, probes, times)
        means.append(p.mean[..., 0])
    return means[0], means[1]


def _histology(r_plain: float, r_aug: float, members: int) -> tuple[float, float]:
    s2 = (members * r_plain ** 2 - 1) / (members - 1)
    needed = np.inf if r_aug ** 2 <= s2 else (1 - s2) / (r_aug ** 2 - s2)
    return float(np.sqrt(s2)), float(needed)


# label -> (reference answer, given, leak strings: the expected value as it could be printed)
REFERENCE = {
    "ex-tour-members": lambda: (4.0, {}, ["4.0", "4"]),
    "groups-ex-centre": lambda: ((40, {"r0°", "r180°"}), {}, ["40", "r180°"]),
    "equivariance-ex-d4-chance": lambda: ((1.7, 1e-7), {}, ["1.7", "1e-07", "1e-7"]),
    "augmentation-ex-d4-blocks": lambda: (_d4_blocks_by_kernel(), {}, []),
    "ntk-ex-interpolation": lambda: (_ntk_interpolation_reference(), {}, ["0.5"]),
    "theorem-ex-stabiliser": lambda: (_stabiliser_reference(), {}, ["0.75", "0.0"]),
    "what_breaks_it-ex-members": lambda: (1600, {"single": 0.4}, ["1600"]),
    "ising-ex-members": lambda: (2401, {"s1": 0.49}, ["2401"]),
    "fashion_mnist-ex-chance": lambda: (1 + 3 * (0.9 ** 2 + 2 * 0.05 ** 2), {}, ["3.445"]),
    "ex-histology-rate": lambda: (_histology(0.54, 0.35, 8),
                                  {"r_plain": 0.54, "r_aug": 0.35, "members": 8},
                                  ["0.43", "0.44", "inf"]),
}

# label -> (wrong answer, given, a word the message must contain)
WRONG = {
    "ex-tour-members": lambda: (16.0, {}, "variance"),
    "groups-ex-centre": lambda: ((64, {0, 1}), {}, "r90°"),
    "equivariance-ex-d4-chance": lambda: ((1.7 / 8, 1e-8), {}, "fraction of |G|"),
    "augmentation-ex-d4-blocks": lambda: (
        (np.arange(8)[None] - np.arange(8)[:, None]) % 8, {}, "circulant"),
    "ntk-ex-interpolation": lambda: (exercise_data("ntk-ex-interpolation")[1], {},
                                     "one value"),
    "theorem-ex-stabiliser": lambda: (_stabiliser_reference(odd_act=False), {}, "act_y"),
    "what_breaks_it-ex-members": lambda: (40, {"single": 0.4}, "1/√M"),
    "ising-ex-members": lambda: (49, {"s1": 0.49}, "1/√M"),
    "fashion_mnist-ex-chance": lambda: (2.0, {}, "equally likely"),
    "ex-histology-rate": lambda: ((0.19, 30),
                                  {"r_plain": 0.54, "r_aug": 0.35, "members": 8}, "s²"),
}


def test_every_registered_exercise_has_a_reference_and_a_wrong_answer():
    assert set(exercises.labels()) == set(REFERENCE) == set(WRONG)


@pytest.mark.parametrize("label", sorted(REFERENCE))
def test_reference_solution_is_correct(label, capsys):
    answer, given, _ = REFERENCE[label]()
    assert check(label, answer, **given) is True
    assert capsys.readouterr().out.strip() == "✓ correct"


@pytest.mark.parametrize("label", sorted(WRONG))
def test_wrong_answer_is_rejected_with_a_hint_and_no_leak(label, capsys):
    answer, given, word = WRONG[label]()
    assert check(label, answer, **given) is False
    out = capsys.readouterr().out.strip()
    assert out.startswith("✗ ") and "\n" not in out, out
    assert word in out, f"{label}: the message should mention {word!r}: {out}"
    reference, _, leaks = REFERENCE[label]()
    tokens = set(re.findall(r"[\w.°+-]+", out)) | {t.rstrip(".") for t in
                                                  re.findall(r"[\w.°+-]+", out)}
    for leak in leaks + ([repr(reference)] if np.ndim(reference) == 0 else []):
        assert leak not in tokens, f"{label}: the message reveals {leak!r}: {out}"


@pytest.mark.parametrize("label", sorted(REFERENCE))
@pytest.mark.parametrize("placeholder", [..., None])
def test_unanswered_starter_says_so_without_raising(label, placeholder, capsys):
    _, given, _ = REFERENCE[label]()
    assert check(label, placeholder, **given) is False
    assert NO_ANSWER in capsys.readouterr().out
    assert check(label, placeholder) is False       # also before the data exist


@pytest.mark.parametrize("answer", ["forty", (40,), (40, "r45°"), ([1, 2], {0}), (True, {0})])
def test_malformed_answers_get_a_message_not_an_exception(answer, capsys):
    assert check("groups-ex-centre", answer) is False
    assert capsys.readouterr().out.startswith("✗ ")


def test_partial_tuple_and_wrong_shape(capsys):
    assert check("equivariance-ex-d4-chance", (1.7, ...)) is False
    assert "not finished" in capsys.readouterr().out
    assert check("augmentation-ex-d4-blocks", np.zeros((4, 4), int)) is False
    assert "shape (8, 8)" in capsys.readouterr().out


def test_more_hints(capsys):
    """Known slips get their own message."""
    cases = [
        ("ex-tour-members", 0.25, {}, "inverted"),
        ("groups-ex-centre", (40, {2}), {}, "identity"),
        ("equivariance-ex-d4-chance", (1.7, 0.0), {}, "tiny"),
        ("fashion_mnist-ex-chance", 1 + 3 * 0.81, {}, "Trouser"),
        ("ising-ex-members", (0.01 / 0.49) ** 2, {"s1": 0.49}, "inverted"),
        ("ex-histology-rate", (_histology(0.54, 0.35, 8)[0], 30),
         {"r_plain": 0.54, "r_aug": 0.35, "members": 8}, "floor"),
        ("ex-histology-rate", (_histology(0.54, 0.5, 8)[0], np.inf),
         {"r_plain": 0.54, "r_aug": 0.5, "members": 8}, "finite"),
    ]
    for label, answer, given, word in cases:
        assert check(label, answer, **given) is False
        out = capsys.readouterr().out
        assert word in out, (label, out)
    # the finite case of the histology exercise is accepted, rounded up to whole members
    s, needed = _histology(0.54, 0.5, 8)
    assert check("ex-histology-rate", (s, np.ceil(needed)), r_plain=0.54, r_aug=0.5,
                 members=8)


def test_unknown_label_raises():
    with pytest.raises(KeyError, match="no check"):
        check("no-such-exercise", 1)


# ------------------------------------------------------------------------- the notebooks

def _cells(chapter: str) -> list[dict]:
    return json.loads((REPO / "book" / f"{chapter}.ipynb").read_text(encoding="utf8"))["cells"]


def _self_checking(chapter: str) -> dict[str, tuple[int, int]]:
    """label -> (index of its starter cell, index of its check cell) in ``chapter``."""
    cells = _cells(chapter)
    found = {}
    for k, cell in enumerate(cells):
        text = "".join(cell["source"])
        m = re.search(r'\bcheck\("([^"]+)", answer\b', text)
        if cell["cell_type"] == "code" and m:
            assert "from eqlib.exercises import check" in text
            found[m.group(1)] = (k - 1, k)
    return found


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_a_self_checking_exercise(chapter):
    found = _self_checking(chapter)
    assert found, f"{chapter}: no exercise with a starter and a check cell"
    cells = _cells(chapter)
    for label, (starter, check_cell) in found.items():
        assert label in exercises.labels(), f"{chapter}: {label!r} has no checker"
        start = cells[starter]
        source = "".join(start["source"])
        assert start["cell_type"] == "code" and re.search(r"^answer = \.\.\.", source, re.M), (
            f"{chapter}: the cell before the check of {label!r} is not its starter")
        assert cells[check_cell]["outputs"] == [] and start["outputs"] == []
        # right after the exercise's solution: the markdown cell before the starter says
        # "Try it", the one before that closes the solution of this label
        assert "Try it" in "".join(cells[starter - 1]["source"])
        before = "".join(cells[starter - 2]["source"])
        assert re.search(rf"\{{solution\}} {re.escape(label)}\n", before), (
            f"{chapter}: the starter of {label!r} does not follow its solution")
        assert before.rstrip().endswith("```"), before[-200:]


def test_every_checker_belongs_to_an_exercise_in_a_notebook():
    text = "\n".join("".join(c["source"]) for chapter in CHAPTERS for c in _cells(chapter)
                     if c["cell_type"] == "markdown")
    exercise_labels = set(re.findall(r"\{exercise\}\n:label: (\S+)", text))
    checked = {label for chapter in CHAPTERS for label in _self_checking(chapter)}
    for label in exercises.labels():
        assert label in exercise_labels, f"{label!r} is not an exercise label in book/"
        assert label in checked, f"{label!r} has a checker but no check cell in book/"


def test_prepared_data_is_what_the_starters_use():
    assert exercise_data("ntk-ex-interpolation")[0].shape == (4, 2)
    with pytest.raises(KeyError):
        exercise_data("groups-ex-centre")
