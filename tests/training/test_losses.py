"""Losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from chronorec.models.repeat import SparseBias
from chronorec.training import losses
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


@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_full_softmax_ce_matches_plain_cross_entropy_and_its_gradients(
    monkeypatch: pytest.MonkeyPatch, with_bias: bool
) -> None:
    # 40 rows of 9 items in chunks of 16 rows (the smallest chunk; the last one is short): loss
    # and every gradient equal those of F.cross_entropy over the materialised logits.
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 2 * 9)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(40, 4, generator=g, requires_grad=True)
    table = torch.randn(10, 4, generator=g, requires_grad=True)
    bias = torch.randn(40, 10, generator=g, requires_grad=True) if with_bias else None
    targets = torch.randint(1, 10, (40,), generator=g)

    loss = full_softmax_ce(q, table, targets, bias)
    grads = torch.autograd.grad(loss, [q, table] + ([bias] if bias is not None else []))
    logits = q @ table[1:].T + (bias[:, 1:] if bias is not None else 0.0)
    ref = F.cross_entropy(logits, targets - 1)
    ref_grads = torch.autograd.grad(ref, [q, table] + ([bias] if bias is not None else []))

    assert torch.allclose(loss, ref, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    assert torch.all(grads[1][0] == 0)  # the padding row gets no gradient


def test_chunked_full_softmax_ce_under_bf16_autocast_stays_close_to_float32() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(300, 16, generator=g)
    table = torch.randn(50, 16, generator=g) * 0.3
    targets = torch.randint(1, 50, (300,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = full_softmax_ce(q, table, targets)
    assert low.dtype == torch.float32
    assert math.isclose(float(low), float(full_softmax_ce(q, table, targets)), rel_tol=2e-2)


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


def test_full_softmax_ce_with_allowed_classes_ignores_the_others() -> None:
    g = torch.Generator().manual_seed(2)
    q = torch.randn(5, 4, generator=g, requires_grad=True)
    table = torch.randn(7, 4, generator=g, requires_grad=True)  # padding + 6 items
    targets = torch.tensor([1, 2, 2, 5, 1])
    allowed = torch.tensor([False, True, True, False, False, True, False])  # items 1, 2, 5
    loss = full_softmax_ce(q, table, targets, allowed=allowed)
    loss.backward()
    keep = torch.tensor([1, 2, 5])
    ref = F.cross_entropy(q @ table[keep].T, torch.tensor([0, 1, 1, 2, 0]))
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.all(table.grad[[0, 3, 4, 6]] == 0)  # never a class, never pushed down


def test_sampled_softmax_logq_counts_the_candidate_pool() -> None:
    # 2 negatives drawn from a pool of 2 items (not the 3 of the table): log(2/2) = 0.
    loss = sampled_softmax(
        Q, TABLE, torch.tensor([3]), torch.tensor([1, 2]), logq=True, n_classes=2
    )
    expected = -(3 - math.log(math.exp(1) + math.exp(2) + math.exp(3)))
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def _sparse_bias(g: torch.Generator, n: int, k: int, v: int) -> SparseBias:
    """Random sparse term with repeated columns and padding entries (column 0)."""
    cols = torch.randint(0, v, (n, k), generator=g)
    cols[:, 0] = cols[:, 1]  # a repeated column is summed
    cols[0, 2] = 0  # padding: never a class
    return SparseBias(cols, torch.randn(n, k, generator=g).requires_grad_())


@pytest.mark.parametrize("loss", ["ce", "sampled", "bce"])
def test_sparse_bias_gives_the_loss_and_gradients_of_its_dense_form(
    monkeypatch: pytest.MonkeyPatch, loss: str
) -> None:
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 3 * 11)  # chunks of 16 rows: 3 chunks
    g = torch.Generator().manual_seed(3)
    q = torch.randn(40, 4, generator=g, requires_grad=True)
    table = torch.randn(12, 4, generator=g, requires_grad=True)
    targets = torch.randint(1, 12, (40,), generator=g)
    sparse = _sparse_bias(g, 40, 5, 12)
    dense = sparse.dense(12)
    dense[:, 0] = 0.0  # the padding column is not a class in either form
    run = {
        "ce": lambda b: full_softmax_ce(q, table, targets, b),
        "sampled": lambda b: sampled_softmax(q, table, targets, torch.tensor([2, 7, 7, 3]), bias=b),
        "bce": lambda b: bce_negatives(q, table, targets, torch.randint(1, 12, (40, 3)), b),
    }[loss]
    torch.manual_seed(0)
    got = run(sparse)
    (grad_w,) = torch.autograd.grad(got, [sparse.weights])
    torch.manual_seed(0)
    want = run(dense)
    (grad_dense,) = torch.autograd.grad(want, [sparse.weights])
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(grad_w, grad_dense, atol=1e-6)
    assert grad_w[0, 2] == 0  # the padding entry moves nothing


@pytest.mark.parametrize("loss_name", ["ce", "sampled", "bce"])
def test_row_weights_give_the_weighted_mean_of_row_losses_and_its_gradients(
    monkeypatch: pytest.MonkeyPatch, loss_name: str
) -> None:
    # 40 rows in chunks of 16: weighting row n by w_n equals sum_n w_n * loss_n / sum_n w_n,
    # each loss_n computed alone; the same for the gradients.
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 2 * 9)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(40, 4, generator=g, requires_grad=True)
    table = torch.randn(10, 4, generator=g, requires_grad=True)
    targets = torch.randint(1, 10, (40,), generator=g)
    w = torch.where(torch.arange(40) % 5 == 0, 10.0, 1.0)
    shared = torch.randint(1, 10, (6,), generator=g)
    own = torch.randint(1, 10, (40, 3), generator=g)

    def loss_of(rows: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if loss_name == "ce":
            return full_softmax_ce(q[rows], table, targets[rows], row_weights=weights)
        if loss_name == "sampled":
            return sampled_softmax(q[rows], table, targets[rows], shared, row_weights=weights)
        return bce_negatives(q[rows], table, targets[rows], own[rows], row_weights=weights)

    every = torch.arange(40)
    weighted = loss_of(every, w)
    ref = sum(w[n] * loss_of(every[n : n + 1]) for n in range(40)) / w.sum()
    assert torch.allclose(weighted, ref, atol=1e-5)
    got = torch.autograd.grad(weighted, [q, table])
    want = torch.autograd.grad(ref, [q, table])
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    # equal weights are the plain mean
    assert torch.allclose(loss_of(every, torch.full((40,), 3.0)), loss_of(every), atol=1e-6)
