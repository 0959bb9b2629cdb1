"""Losses against hand-computed values."""

from __future__ import annotations

import math

import torch

from chronorec.training.losses import (
    bce_negatives,
    full_softmax_ce,
    sampled_softmax,
    uniform_negatives,
)

# 3 items (+ padding row 0); scores of the one query are q · e = [1, 2, 3] for items 1..3.
TABLE = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
Q = torch.tensor([[1.0]])


def test_full_softmax_ce_ignores_the_padding_row():
    loss = full_softmax_ce(Q, TABLE, torch.tensor([3]))
    expected = -(3 - math.log(math.exp(1) + math.exp(2) + math.exp(3)))
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_sampled_softmax_without_correction_is_softmax_over_target_and_negatives():
    loss = sampled_softmax(Q, TABLE, torch.tensor([3]), torch.tensor([1, 2]), logq=False)
    expected = -(3 - math.log(math.exp(1) + math.exp(2) + math.exp(3)))
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_sampled_softmax_logq_and_accidental_hits():
    # Negatives [1, 3]: 3 is the target and is masked; M = 2 of V = 3 -> subtract log(2/3).
    loss = sampled_softmax(Q, TABLE, torch.tensor([3]), torch.tensor([1, 3]), logq=True)
    neg = 1 - math.log(2 / 3)
    expected = -(3 - math.log(math.exp(3) + math.exp(neg)))
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_bce_with_negatives():
    loss = bce_negatives(Q, TABLE, torch.tensor([2]), torch.tensor([[1, 2]]))
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = sp(-2) + sp(1)  # the negative equal to the target is dropped
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_uniform_negatives_never_draw_padding():
    draws = uniform_negatives(5, (10_000,), torch.Generator().manual_seed(0))
    assert int(draws.min()) == 1 and int(draws.max()) == 5
