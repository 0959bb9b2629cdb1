"""The one training loop: batch -> forward -> loss -> backward -> clip -> step -> log.

Every position of a user's window is trained at once (causal next-item prediction at each step).
Validation runs every ``eval_every`` epochs; the best weights are kept (on disk when a run
directory is given) and training stops after ``patience`` validations without improvement, after
``max_epochs``, or when the ``max_minutes`` wall-time budget is spent.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from chronorec.config import TrainConfig
from chronorec.data.sequences import EventArrays
from chronorec.errors import ConfigError
from chronorec.hardware import cpu_has_bf16
from chronorec.models.model import NextItemModel
from chronorec.models.repeat import SparseBias
from chronorec.progress import bars
from chronorec.training import checkpoint as ckpt
from chronorec.training import distributed
from chronorec.training.losses import (
    bce_negatives,
    full_softmax_ce,
    sampled_softmax,
    uniform_negatives,
)

log = logging.getLogger(__name__)

Validate = Callable[[NextItemModel], dict[str, float]]


@dataclass
class TrainResult:
    epochs: int  # epochs completed (over all resumed sessions)
    best_epoch: int  # 0 when never validated
    best_metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""  # "patience", "max_epochs", "max_minutes"
    wall_minutes: float = 0.0  # training wall time over all sessions
    tokens_per_s: float = 0.0


def training_windows(
    lengths: np.ndarray, max_len: int, all_windows: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``max_len + 1`` events as ``(users, ends)``: events ``[end - max_len - 1, end)``.

    The last window of every user with >= 2 events; with ``all_windows`` also the earlier ones of
    long users, stepping back ``max_len`` events so each event is a target exactly once.
    """
    users = np.flatnonzero(lengths >= 2)
    ends = lengths[users].astype(np.int64)
    if not all_windows:
        return users, ends
    counts = 1 + (ends - 2) // max_len  # (U,)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(int(counts.sum())) - first  # window number within its user
    return np.repeat(users, counts), np.repeat(ends, counts) - k * max_len


def target_positions(
    items: torch.Tensor,
    timestamps: torch.Tensor,
    kind: str,
    generator: torch.Generator | None = None,
    window_seconds: int = 0,
) -> torch.Tensor:
    """Window (B, W), left-padded -> (B, W - 1): the window position of the event that input
    step t learns to predict, or -1 where there is none.

    ``next-event``: t + 1. ``next-basket``: a random event of the basket after t's, where a
    basket is a run of events with one timestamp; the steps of the window's last basket have
    no target. ``next-window``: a random event after t's basket and at most ``window_seconds``
    after t (PinnerFormer's dense all-action loss): what a user will do over the coming days,
    which is what a test window of days asks for.
    """
    B, W = items.shape
    if kind == "next-event":
        return torch.arange(1, W).expand(B, W - 1)
    pad = items == 0  # (B, W)
    starts = torch.ones_like(pad)  # (B, W) True where a basket starts
    starts[:, 1:] = (timestamps[:, 1:] != timestamps[:, :-1]) | pad[:, :-1]
    basket = starts.long().cumsum(1)  # (B, W) non-decreasing basket number
    first = torch.searchsorted(basket, basket + 1)  # (B, W) start of the next basket
    if kind == "next-basket":
        end = torch.searchsorted(basket, basket + 1, right=True)  # (B, W) past the next basket
    elif kind == "next-window":
        # padding (at the left) takes the smallest timestamp, so every row stays sorted
        stamps = timestamps.masked_fill(pad, torch.iinfo(timestamps.dtype).min).contiguous()
        end = torch.searchsorted(stamps, stamps + window_seconds, right=True)  # (B, W)
    else:
        raise ValueError(f"unknown target kind {kind!r}")
    size = end - first  # (B, W) candidate events for each step
    u = torch.rand(B, W, generator=generator)
    pick = first + (u * size).long().clamp(max=(size - 1).clamp(min=0))  # (B, W)
    none = pad | (size <= 0)
    return pick.masked_fill(none, -1)[:, :-1]


def length_bucketed_batches(
    ends: np.ndarray, max_len: int, batch_size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Shuffled batches of window indices with similar lengths, so little time goes on padding."""
    order = rng.permutation(ends.size)
    chunk = batch_size * 32
    batches = []
    for c in range(0, order.size, chunk):
        part = order[c : c + chunk]
        part = part[np.argsort(np.minimum(ends[part], max_len + 1), kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, part.size, batch_size)]
    for b in rng.permutation(len(batches)):
        yield batches[b]


def lr_decay_factor(kind: str, progress: float, start: float = 0.0) -> float:
    """Learning-rate multiplier after warm-up at ``progress`` in [0, 1] of the run: 1 for
    "none", falling from 1 at ``start`` to 0 at the end for "linear" and "cosine". Annealing to
    zero by the end of a fixed budget is what a budget-limited run wants (Li et al., "Budgeted
    Training", ICLR 2020); a constant rate leaves the last epochs noisy."""
    p = min(max((progress - start) / (1.0 - start), 0.0), 1.0)
    if kind == "linear":
        return 1.0 - p
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0


Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]


def ema_update(decay: float) -> Callable[[Tensors, Tensors, torch.Tensor | int], None]:
    """The update of train.ema's average after ``n`` earlier updates: ``avg <- d * avg +
    (1 - d) * weights`` with ``d = min(decay, (1 + n) / (10 + n))``, so the first steps' (near
    random) weights fade at once and a run of fewer than ~10 / (1 - decay) steps averages over
    about its last ninth."""

    def update(averaged: Tensors, current: Tensors, n: torch.Tensor | int) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        for avg, weights in zip(averaged, current, strict=True):
            avg.lerp_(weights, 1.0 - d)

    return update


def _autocast(precision: str) -> contextlib.AbstractContextManager[object]:
    """Mixed precision for the training forward pass (ML-1M tokens/s on 2 cores: 2.3x with AMX;
    1.4x with AVX-512 BF16 on an AMD EPYC). Weights, optimizer state and evaluation stay float32."""
    if precision == "bf16" or (precision == "auto" and cpu_has_bf16()):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _loss(
    model: NextItemModel,
    cfg: TrainConfig,
    hidden: torch.Tensor,
    last: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    bias: SparseBias | None = None,
    candidates: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    row_weights: torch.Tensor | None = None,
    next_behaviour: torch.Tensor | None = None,
) -> torch.Tensor:
    """hidden (N, D) at real positions after the input items ``last`` (N,), targets (N,),
    optional sparse logit ``bias`` -> scalar loss of ``cfg.loss``. ``candidates`` (C,) are the
    only items that may be negatives (all when None) and ``allowed`` (V,) the same set as a mask,
    both built once per run; ``row_weights`` (N,) weigh the positions (plain mean when None);
    ``next_behaviour`` (N,) is each target's behaviour, for a model that conditions on it."""
    q, e = model.score_inputs(hidden, table, last, next_behaviour)
    w = row_weights
    if cfg.loss == "ce":
        return full_softmax_ce(q, e, targets, bias, allowed, row_weights=w)
    n = model.n_items if candidates is None else int(candidates.numel())
    if cfg.loss == "sampled":
        negatives = uniform_negatives(n, (cfg.n_negatives,), generator)
        if candidates is not None:
            negatives = candidates[negatives - 1]
        return sampled_softmax(
            q, e, targets, negatives, logq=cfg.logq, bias=bias, n_classes=n, row_weights=w
        )
    negatives = uniform_negatives(n, (targets.shape[0], cfg.n_negatives), generator)
    if candidates is not None:
        negatives = candidates[negatives - 1]
    return bce_negatives(q, e, targets, negatives, bias, row_weights=w)


class StepLoss(nn.Module):
    """One training step's loss (next-item loss + the behaviour head's) as a module, so that
    ``DistributedDataParallel`` can wrap it: windows (B, W) and target positions -> scalar."""

    def __init__(
        self,
        model: NextItemModel,
        cfg: TrainConfig,
        generator: torch.Generator,
        candidates: torch.Tensor | None,
        allowed: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.generator = generator
        self.candidates = candidates
        self.allowed = allowed

    def forward(
        self,
        items: torch.Tensor,
        behaviours: torch.Tensor,
        timestamps: torch.Tensor,
        pos: torch.Tensor,
        targets: torch.Tensor,
        real: torch.Tensor,
    ) -> torch.Tensor:
        model, cfg = self.model, self.cfg
        inputs = items[:, :-1]  # (B, W-1)
        table = model.item_table()  # (V, D)
        hidden = model(inputs, behaviours[:, :-1], timestamps[:, :-1], table)  # (B, W-1, D)
        h = hidden[real]  # (N, D)
        tgt = targets[real]  # (N,)
        next_beh = behaviours.gather(1, pos.clamp(min=0)).masked_fill(pos < 0, 0)
        cond = next_beh if model.cfg.next_behaviour else None  # (B, W-1) 1-based
        # repeat term, sparse (B, W-1, W-1) -> (N, W-1) at the real positions
        bias = model.repeat_steps(inputs, behaviours[:, :-1], timestamps[:, :-1], cond)
        if bias is not None:
            bias = bias[real]
        last = inputs[real]  # (N,) the input item at each real position
        b_target = next_beh[real] - 1  # (N,) 0-based
        loss = _loss(
            model, cfg, h, last, table, tgt, self.generator, bias, self.candidates, self.allowed,
            None, None if cond is None else cond[real],
        )  # fmt: skip
        if model.behaviour_head is not None:
            feats = model.behaviour_features(
                inputs, behaviours[:, :-1], targets[:, :, None]
            )  # (B, W-1, 1, F) or None
            feats = None if feats is None else feats[:, :, 0][real]  # (N, F)
            b_logits = model.behaviour_head(h, table[tgt], feats)  # (N, n_behaviours)
            loss = loss + cfg.behaviour_loss_weight * F.cross_entropy(b_logits, b_target)
        return loss


def train(
    model: NextItemModel,
    events: EventArrays,
    cfg: TrainConfig,
    *,
    validate: Validate | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    only_users: np.ndarray | None = None,
) -> TrainResult:
    """Train ``model`` in place on the histories in ``events`` (a split's ``train`` log) and leave
    it holding the best validated weights. ``only_users``
    trains the windows of those users only (fine-tuning on the users with new events); every
    item of ``events`` is still a candidate of the loss."""
    started = time.perf_counter()
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    rank, world = distributed.rank_and_size()
    torch.set_num_threads(cfg.threads or distributed.local_threads())
    torch.manual_seed(cfg.seed)
    max_len = model.cfg.max_len
    run = Path(run_dir) if run_dir is not None else None
    out = run if rank == 0 else None  # the one process that writes the run
    progress = progress and rank == 0

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    warmup = max(cfg.warmup_steps, 1)
    steps_total = math.inf  # set once the training windows are known

    def lr_factor(step: int) -> float:
        """Rate multiplier for optimizer step ``step`` (0-based). Decay follows the share of the
        run done: of the wall-time budget when there is one, else of max_epochs. A resumed run's
        budget is the time already trained plus its new max_minutes, so the anneal continues
        from where that total puts it."""
        if cfg.max_minutes:
            budget = prior_seconds + cfg.max_minutes * 60
            progress = (prior_seconds + time.perf_counter() - started) / budget
        else:
            progress = step / steps_total
        decay = lr_decay_factor(cfg.lr_decay, progress, cfg.decay_start)
        return min(1.0, (step + 1) / warmup) * decay

    prior_seconds = 0.0
    state: dict[str, Any] = {
        "epoch": 0, "step": 0, "best": -math.inf, "best_epoch": 0, "best_metrics": {},
        "bad_evals": 0, "history": [], "seconds": 0.0, "tokens": 0,
    }  # fmt: skip
    best_weights: dict[str, torch.Tensor] | None = None
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    # with train.ema the averaged copy is what is validated, kept and returned
    ema = AveragedModel(model, multi_avg_fn=ema_update(cfg.ema)) if cfg.ema else None
    scored = model if ema is None else cast(NextItemModel, ema.module)
    if resume:
        if run is None or not (run / ckpt.STATE_FILE).is_file():
            raise FileNotFoundError(f"nothing to resume in {run}: no {ckpt.STATE_FILE}")
        saved = ckpt.load_train_state(run / ckpt.STATE_FILE)
        if "weights" in saved:
            model.load_state_dict(saved["weights"])
        else:  # a run saved before the weights moved into the state file
            ckpt.load_weights(run / ckpt.LAST_WEIGHTS_FILE, model)
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = saved["loop"]
        prior_seconds = state["seconds"]
        if ema is not None:
            if "ema" not in saved:
                raise ConfigError(f"{run}: --resume with train.ema, but the run kept no average")
            ema.load_state_dict(saved["ema"])
        log.info(
            "resuming after epoch %d (best %s = %.4f)",
            state["epoch"],
            cfg.select_metric,
            state["best"],
        )

    users, ends = training_windows(events.user_lengths(), max_len, cfg.all_windows)
    if only_users is not None:
        keep = np.isin(users, only_users)
        users, ends = users[keep], ends[keep]
    if users.size == 0:
        raise ValueError("no user has two training events: nothing to learn from")
    steps_total = cfg.max_epochs * max(math.ceil(users.size / cfg.batch_size) // world, 1)
    generator = torch.Generator().manual_seed(cfg.seed)
    horizon = int(cfg.target_days * 86400)  # next-window targets: seconds ahead
    autocast = _autocast(cfg.precision)
    # A text tower scores an item from its text, so an item with no training events would be
    # pushed down as a negative through its text vector and ranked last once it appears (the
    # cold-start protocol measured cold/warm NDCG@10 0.01-0.12 on Amazon Scientific that way).
    # It is left out of the loss instead, as if not yet in the catalogue; an ID-only model keeps
    # the whole catalogue (an unseen ID has nothing to be scored from).
    candidates, allowed = None, None
    if model.cfg.item_repr != "id":
        candidates = torch.from_numpy(np.unique(events.items[events.items > 0]))  # (C,)
        allowed = torch.zeros(model.n_items + 1, dtype=torch.bool)  # (V,)
        allowed[candidates] = True
    stopped = "max_epochs"
    session_tokens, session_seconds = 0, 0.0
    step_loss = StepLoss(model, cfg, generator, candidates, allowed)
    runner: nn.Module = step_loss
    if world > 1:  # averages the gradients over the processes in backward()
        runner = DistributedDataParallel(step_loss, static_graph=True)

    while state["epoch"] < cfg.max_epochs:
        epoch = state["epoch"] + 1
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout; reproducible across --resume
        model.train()
        t0 = time.perf_counter()
        batches = list(length_bucketed_batches(ends, max_len, cfg.batch_size, rng))
        if world > 1:  # every world-th batch; as many for each process (a few left out)
            batches = batches[: len(batches) - len(batches) % world][rank::world]
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False,
                   disable=not bars(progress))  # fmt: skip
        loss_sum, epoch_tokens, out_of_time = 0.0, 0, False
        for i, idx in enumerate(bar):
            window = events.histories(users[idx], ends[idx], max_len + 1)
            width = int(window.lengths.max())  # trim the all-padding columns of short batches
            items = torch.from_numpy(window.items[:, -width:])  # (B, W)
            behaviours = torch.from_numpy(window.behaviours[:, -width:])
            timestamps = torch.from_numpy(window.timestamps[:, -width:])
            pos = target_positions(items, timestamps, cfg.target, generator, horizon)  # (B, W-1)
            targets = items.gather(1, pos.clamp(min=0)).masked_fill(pos < 0, 0)  # (B, W-1)
            real = (items[:, :-1] > 0) & (targets > 0)  # (B, W-1)
            # next-basket: windows inside a single basket teach nothing. Processes skip a step
            # and stop at the deadline together, or the others would wait on its gradients.
            empty, late = distributed.any_of(not real.any(), world > 1 and past(deadline))
            if late:
                out_of_time = True
                break
            if empty:
                continue

            with autocast:
                loss = runner(items, behaviours, timestamps, pos, targets, real)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.update_parameters(model)
            state["step"] += 1

            n_tok = int(real.sum())
            epoch_tokens += n_tok
            loss_sum += float(loss.detach()) * n_tok
            if i % 10 == 0:
                rate = epoch_tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", tok_s=f"{rate:,.0f}")
            if world == 1 and past(deadline):
                out_of_time = True
                break
        bar.close()
        seconds = time.perf_counter() - t0
        loss_sum, tokens_all = distributed.sums(loss_sum, epoch_tokens)
        epoch_tokens = int(tokens_all)  # every process's (the throughput of all of them)
        session_tokens += epoch_tokens
        session_seconds += seconds
        state["tokens"] += epoch_tokens
        state["seconds"] += seconds
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss_sum / max(epoch_tokens, 1),
            "tokens": epoch_tokens,
            "seconds": round(seconds, 2),
            "tokens_per_s": round(epoch_tokens / max(seconds, 1e-9), 1),
            "complete": not out_of_time,
        }
        state["epoch"] = epoch

        last_epoch = epoch == cfg.max_epochs or out_of_time
        if validate is not None and (epoch % cfg.eval_every == 0 or last_epoch):
            metrics = validate(scored)
            record["valid"] = metrics
            score = metrics[cfg.select_metric]
            if score > state["best"]:
                state.update(best=score, best_epoch=epoch, best_metrics=metrics, bad_evals=0)
                if out is not None:
                    ckpt.save_weights(out / ckpt.WEIGHTS_FILE, scored)
                else:
                    best_weights = copy.deepcopy(scored.state_dict())
            else:
                state["bad_evals"] += 1
        elif validate is None and out is not None:
            ckpt.save_weights(out / ckpt.WEIGHTS_FILE, scored)
        state["history"].append(record)
        log.info("epoch %d: %s", epoch, record)
        if progress:
            valid = record.get("valid", {})
            tqdm.write(
                f"epoch {epoch}: loss {record['loss']:.4f}, {record['tokens_per_s']:,.0f} tok/s"
                + (f", valid {cfg.select_metric} {valid[cfg.select_metric]:.4f}" if valid else "")
            )

        if out is not None:
            # the latest weights in the same file as the optimiser's state: one atomic rename,
            # so a kill -9 can never leave one epoch's weights beside another's optimiser
            ckpt.save_train_state(
                out / ckpt.STATE_FILE,
                {"weights": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict(), "loop": state}
                | ({} if ema is None else {"ema": ema.state_dict()}),
            )  # fmt: skip
            ckpt.write_json(out / ckpt.METRICS_FILE, _summary(state, "running"))
        if distributed.any_of(out_of_time or past(deadline))[0]:
            stopped = "max_minutes"
            break
        if state["bad_evals"] >= cfg.patience:
            stopped = "patience"
            break

    if validate is not None and state["best_epoch"] > 0:
        if out is not None:
            ckpt.load_weights(out / ckpt.WEIGHTS_FILE, model)
        elif best_weights is not None:
            model.load_state_dict(best_weights)
    elif ema is not None:  # no validation (a refit): the average at the last step
        model.load_state_dict(scored.state_dict())
    if out is not None:
        ckpt.write_json(out / ckpt.METRICS_FILE, _summary(state, stopped))
    return TrainResult(
        epochs=state["epoch"],
        best_epoch=state["best_epoch"],
        best_metrics=dict(state["best_metrics"]),
        history=list(state["history"]),
        stopped=stopped,
        wall_minutes=state["seconds"] / 60,
        tokens_per_s=session_tokens / max(session_seconds, 1e-9),
    )


def past(deadline: float) -> bool:
    return time.perf_counter() > deadline


def _summary(state: dict[str, Any], stopped: str) -> dict[str, Any]:
    return {
        "stopped": stopped,
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_valid": state["best_metrics"],
        "train_minutes": round(state["seconds"] / 60, 3),
        "tokens": state["tokens"],
        "history": state["history"],
    }
