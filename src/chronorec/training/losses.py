"""Next-item losses as pure functions of query vectors, the item table and targets.

Every loss takes ``q`` (N, D) — the prepared hidden states of the N real positions of a batch — and
``table`` (V, D) with row 0 = padding, such that ``score(n, i) = q[n] · table[i]`` (see
:meth:`chronorec.models.heads.ScoreHead.prepare`), and ``targets`` (N,) item indices in ``1..V-1``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from chronorec.models.repeat import SparseBias

CHUNK_ELEMENTS = 1 << 20  # logits per chunk of the fused cross-entropy (4 MB in float32)


def full_softmax_ce(
    q: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | SparseBias | None = None,
    allowed: torch.Tensor | None = None,
    row_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue (the padding row is never a class). ``bias``
    (N, V), or sparse (N, K), is added to the logits (the repeat term). ``allowed`` (V,) bool
    limits the classes to those rows: an item outside it is neither a class nor pushed down as a
    negative. ``row_weights`` (N,) > 0 make the loss the weighted mean over rows (default: the
    plain mean).

    The (N, V) logits are never held at once: :class:`_ChunkedCatalogueCE` computes them a few
    hundred rows at a time and again in the backward pass. Under bf16 autocast the matmuls run in
    bf16 and the softmax in float32, as autocast would do, in half the time or less on ML-1M
    (N = 25,600, V = 3,416: 280-410 ms against 770-830 ms forward + backward, 2 threads).
    """
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else q.dtype
    rows = max(16, CHUNK_ELEMENTS // max(table.shape[0] - 1, 1))
    mask = None if allowed is None else ~allowed[1:]  # (V - 1,) True = not a class
    cols, weights = None, None
    if isinstance(bias, SparseBias):  # (N, K): as class indices, padding entries weigh 0
        cols, weights = (bias.cols - 1).clamp(min=0), bias.weights * (bias.cols > 0)
        bias = None
    w = None if row_weights is None else (row_weights / row_weights.sum()).float()  # (N,)
    loss: torch.Tensor = _ChunkedCatalogueCE.apply(
        q, table, targets, bias, cols, weights, mask, rows, dtype, w
    )
    return loss


class _ChunkedCatalogueCE(torch.autograd.Function):
    """Mean over rows (or the sum weighted by ``row_w``, which sums to 1) of
    ``logsumexp(q e^T + bias) - (q e^T + bias)[target]``, in row chunks."""

    @staticmethod
    def forward(
        ctx: Any,  # torch's FunctionCtx, which declares none of the attributes set on it
        q: torch.Tensor,
        table: torch.Tensor,
        targets: torch.Tensor,
        bias: torch.Tensor | None,
        cols: torch.Tensor | None,
        weights: torch.Tensor | None,
        masked: torch.Tensor | None,
        rows: int,
        dtype: torch.dtype,
        row_w: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``bias`` (N, V) dense, or ``weights`` (N, K) added at class indices ``cols``."""
        qd, e = q.to(dtype), table[1:].to(dtype)  # (N, D), (V - 1, D)
        cls = targets - 1  # (N,) class index: the padding row is not a class
        lse = torch.empty(q.shape[0], dtype=torch.float32)  # (N,)
        picked = torch.empty(q.shape[0], dtype=torch.float32)  # (N,) target logit
        sparse = (cols, weights)
        for s in range(0, q.shape[0], rows):
            logits = _chunk_logits(qd, e, bias, sparse, masked, s, rows)  # (n, V - 1) float32
            lse[s : s + rows] = torch.logsumexp(logits, dim=1)
            picked[s : s + rows] = logits.gather(1, cls[s : s + rows, None])[:, 0]
        ctx.save_for_backward(qd, e, cls, lse, bias, cols, weights, masked, row_w)
        ctx.rows = rows
        ctx.dtypes = (q.dtype, table.dtype)
        if row_w is None:
            return (lse - picked).mean()
        return ((lse - picked) * row_w).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        qd, e, cls, lse, bias, cols, weights, masked, row_w = ctx.saved_tensors
        rows: int = ctx.rows
        q_dtype, table_dtype = ctx.dtypes
        # d loss / d row loss: 1 / N each, or each row's weight
        scale = grad.float() / qd.shape[0] if row_w is None else grad.float() * row_w[:, None]
        grad_q = torch.empty(qd.shape, dtype=torch.float32)  # (N, D)
        grad_e = torch.zeros(e.shape, dtype=torch.float32)  # (V - 1, D)
        grad_bias, grad_weights = None, None
        if bias is not None and ctx.needs_input_grad[3]:
            grad_bias = torch.zeros(bias.shape, dtype=bias.dtype)  # (N, V)
        if weights is not None and ctx.needs_input_grad[5]:
            grad_weights = torch.zeros(weights.shape, dtype=weights.dtype)  # (N, K)
        for s in range(0, qd.shape[0], rows):
            logits = _chunk_logits(qd, e, bias, (cols, weights), masked, s, rows)  # (n, V - 1)
            # d loss / d logits = (softmax - one_hot(target)) * the row's share of grad
            p = logits.sub_(lse[s : s + rows, None]).exp_()
            p[torch.arange(p.shape[0]), cls[s : s + rows]] -= 1.0
            p.mul_(scale if row_w is None else scale[s : s + rows])
            if grad_bias is not None:
                grad_bias[s : s + rows, 1:] = p
            if grad_weights is not None:
                grad_weights[s : s + rows] = p.gather(1, cols[s : s + rows])
            pd = p.to(e.dtype)
            grad_q[s : s + rows] = pd @ e
            grad_e += (pd.T @ qd[s : s + rows]).float()
        grad_table = torch.nn.functional.pad(grad_e, (0, 0, 1, 0)).to(table_dtype)  # (V, D)
        return (grad_q.to(q_dtype), grad_table, None, grad_bias, None, grad_weights,
                None, None, None, None)  # fmt: skip


def _chunk_logits(
    q: torch.Tensor,
    e: torch.Tensor,
    bias: torch.Tensor | None,
    sparse: tuple[torch.Tensor | None, torch.Tensor | None],
    masked: torch.Tensor | None,
    start: int,
    rows: int,
) -> torch.Tensor:
    """float32 logits of rows ``[start, start + rows)``: (n, D) @ (V - 1, D)^T (+ bias, dense
    or as ``sparse`` = (class columns, weights) (N, K)), -inf in the ``masked`` (V - 1,)
    columns."""
    logits = (q[start : start + rows] @ e.T).float()
    if bias is not None:
        logits += bias[start : start + rows, 1:]
    cols, weights = sparse
    if cols is not None and weights is not None:
        end = start + rows
        logits.scatter_add_(1, cols[start:end], weights[start:end].float())
    if masked is not None:
        logits.masked_fill_(masked, float("-inf"))
    return logits


def uniform_negatives(
    n_items: int, shape: tuple[int, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Item indices drawn uniformly from ``1..n_items``."""
    return torch.randint(1, n_items + 1, shape, generator=generator)


def sampled_softmax(
    q: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    *,
    logq: bool = True,
    bias: torch.Tensor | SparseBias | None = None,
    n_classes: int | None = None,
    row_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the target and M negatives shared by the batch (``negatives`` (M,)).

    With ``logq`` each negative's logit is corrected by ``log(M · Q(j))`` — for uniform sampling
    ``Q(j) = 1 / (V - 1)`` — which makes the sampled partition function an unbiased estimate of the
    full one. A negative that equals the row's target is masked out. ``row_weights`` (N,): a
    weighted mean over rows.
    """
    pos = (q * table[targets]).sum(-1, keepdim=True)  # (N, 1)
    neg = q @ table[negatives].T  # (N, M)
    if isinstance(bias, SparseBias):  # (N, K) additive term, e.g. repeat bonus
        pos = pos + bias.at(targets)[:, None]
        neg = neg + bias.at_shared(negatives)
    elif bias is not None:  # (N, V)
        pos = pos + bias.gather(1, targets[:, None])
        neg = neg + bias[:, negatives]
    if logq:  # negatives drawn uniformly from n_classes items (default: the whole catalogue)
        n_items = table.shape[0] - 1 if n_classes is None else n_classes
        neg = neg - math.log(negatives.shape[0] / n_items)
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=1)  # (N, 1 + M)
    per_row = F.cross_entropy(logits, torch.zeros_like(targets), reduction="none")  # (N,)
    return _mean(per_row, row_weights)


def bce_negatives(
    q: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    bias: torch.Tensor | SparseBias | None = None,
    row_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy: target = 1, each of its own negatives (``negatives`` (N, M)) = 0,
    summed per row and averaged over rows (weighted by ``row_weights`` (N,) when given).
    A sparse ``bias`` is made dense here: this loss is kept for comparison, not for large
    catalogues."""
    pos = (q * table[targets]).sum(-1)  # (N,)
    neg = torch.einsum("nd,nmd->nm", q, table[negatives])  # (N, M)
    if isinstance(bias, SparseBias):
        bias = bias.dense(table.shape[0])  # (N, V)
    if bias is not None:  # (N, V) additive term, e.g. repeat bonus
        pos = pos + bias.gather(1, targets[:, None])[:, 0]
        neg = neg + bias.gather(1, negatives)
    keep = (negatives != targets[:, None]).to(q.dtype)  # (N, M)
    per_row = F.softplus(-pos) + (F.softplus(neg) * keep).sum(1)  # (N,)
    return _mean(per_row, row_weights)


def _mean(per_row: torch.Tensor, row_weights: torch.Tensor | None) -> torch.Tensor:
    """(N,) row losses -> their mean, or their mean weighted by ``row_weights`` (N,)."""
    if row_weights is None:
        return per_row.mean()
    w = row_weights.to(per_row.dtype)
    return (per_row * w).sum() / w.sum()
