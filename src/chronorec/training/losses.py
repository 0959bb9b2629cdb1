"""Next-item losses as pure functions of query vectors, the item table and targets.

Every loss takes ``q`` (N, D) — the prepared hidden states of the N real positions of a batch — and
``table`` (V, D) with row 0 = padding, such that ``score(n, i) = q[n] · table[i]`` (see
:meth:`chronorec.models.heads.ScoreHead.prepare`), and ``targets`` (N,) item indices in ``1..V-1``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def full_softmax_ce(
    q: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue (the padding row is never a class). ``bias``
    (N, V) is added to the logits (the repeat term)."""
    logits = q @ table[1:].T  # (N, V - 1)
    if bias is not None:
        logits = logits + bias[:, 1:]
    return F.cross_entropy(logits, targets - 1)


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
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the target and M negatives shared by the batch (``negatives`` (M,)).

    With ``logq`` each negative's logit is corrected by ``log(M · Q(j))`` — for uniform sampling
    ``Q(j) = 1 / (V - 1)`` — which makes the sampled partition function an unbiased estimate of the
    full one. A negative that equals the row's target is masked out.
    """
    pos = (q * table[targets]).sum(-1, keepdim=True)  # (N, 1)
    neg = q @ table[negatives].T  # (N, M)
    if bias is not None:  # (N, V) additive term, e.g. repeat bonus
        pos = pos + bias.gather(1, targets[:, None])
        neg = neg + bias[:, negatives]
    if logq:
        n_items = table.shape[0] - 1
        neg = neg - math.log(negatives.shape[0] / n_items)
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=1)  # (N, 1 + M)
    return F.cross_entropy(logits, torch.zeros_like(targets))


def bce_negatives(
    q: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy: target = 1, each of its own negatives (``negatives`` (N, M)) = 0."""
    pos = (q * table[targets]).sum(-1)  # (N,)
    neg = torch.einsum("nd,nmd->nm", q, table[negatives])  # (N, M)
    if bias is not None:  # (N, V) additive term, e.g. repeat bonus
        pos = pos + bias.gather(1, targets[:, None])[:, 0]
        neg = neg + bias.gather(1, negatives)
    keep = (negatives != targets[:, None]).to(q.dtype)  # (N, M)
    pos_loss = F.softplus(-pos).mean()
    neg_loss = (F.softplus(neg) * keep).sum() / q.shape[0]
    return pos_loss + neg_loss
