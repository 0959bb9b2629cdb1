"""The facade: ``Recommender(...).fit(dataset)``, ``recommend``, ``evaluate``, ``save``, ``load``.

The one path used by the CLI, the evaluation and the HTTP service. Hyper-parameters live in a
:class:`~chronorec.config.RunConfig`; ``fit`` returns ``self``; ``recommend`` is batch-first and
answers in the dataset's own item ids. A :class:`Recommender` is also an evaluation
:class:`~chronorec.evaluation.Scorer` (``score(batch, users)``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from chronorec import __version__
from chronorec.config import RunConfig
from chronorec.data.dataset import PreparedDataset, load_prepared
from chronorec.data.sequences import EventArrays, HistoryBatch
from chronorec.data.splits import Split, leave_one_out, temporal_split
from chronorec.errors import ChronorecError, ConfigError, DataError
from chronorec.models.model import NextItemModel
from chronorec.training import checkpoint as ckpt
from chronorec.training import distributed
from chronorec.training.loop import TrainResult, train

log = logging.getLogger(__name__)

NAME_COLUMNS = ("title", "name", "description")
RESUMABLE_CHANGES = ("max_epochs", "max_minutes", "patience", "threads", "eval_batch_size")
# Recommender.finetune defaults (BENCHMARKS.md, "fine-tuning on new events")
FINETUNE_EPOCHS = 5
FINETUNE_LR_SCALE = 1.0


def cold_items(dataset: PreparedDataset, cfg: RunConfig) -> np.ndarray:
    """Items hidden from training by the cold-start protocol (empty unless data.cold_fraction)."""
    from chronorec.evaluation import select_cold_items

    return select_cold_items(dataset.n_items, cfg.data.cold_fraction, cfg.data.cold_seed)


def make_split(dataset: PreparedDataset, cfg: RunConfig, *, earlier: int = 0) -> Split:
    """The split named by ``cfg.data`` (the same one at fit and at evaluation time), with the
    cold-start items removed from training when ``data.cold_fraction > 0``.

    ``earlier=k`` moves it ``k`` validation windows back — the validation targets become each
    user's (k + 2)-th last event (leave-one-out), or the events ``k`` validation windows before
    the validation window (temporal) — with ``train`` every event before them: more windows to
    train a learned blend on (:func:`chronorec.blend.fit_learned`). Its targets' history
    lengths index the full log, as the split's own do."""
    if earlier < 0:
        raise ValueError(f"earlier must be >= 0, not {earlier}")
    d = cfg.data
    if d.split == "leave-one-out":
        events = dataset.events
        if earlier:  # each user's last `earlier` events dropped; positions stay as they were
            n = pl.col("position").max().over("user") + 1
            events = events.filter(pl.col("position") < n - earlier)
        split = leave_one_out(events, min_events=d.min_events)
    else:
        assert d.test_days is not None  # DataConfig checks it
        window = d.valid_days if d.valid_days is not None else d.test_days
        split = temporal_split(
            dataset.events,
            test_days=d.test_days + earlier * window,
            valid_days=window,
            behaviour=d.target_behaviour,
        )
    if d.cold_fraction > 0:
        from chronorec.evaluation import cold_start_split

        split = cold_start_split(split, cold_items(dataset, cfg))
    return split


def _new_model(
    cfg: RunConfig, n_items: int, n_behaviours: int, text: torch.Tensor | None
) -> NextItemModel:
    """The untrained model of a run config (ranking for data.target_behaviour when the model
    conditions on the next event's behaviour)."""
    return NextItemModel(cfg.model, n_items, n_behaviours, text, cfg.data.target_behaviour)


def build_text_vectors(dataset: PreparedDataset, cfg: RunConfig) -> np.ndarray:
    """The frozen item-text matrix ``(n_items + 1, d)`` from the text tower (cached on disk)."""
    from chronorec.text import item_matrix  # the encoder is imported only when text is asked for
    from chronorec.text.config import TextConfig

    text_cfg = TextConfig.from_dict(cfg.text) if cfg.text else None
    return np.asarray(item_matrix(dataset, text_cfg), dtype=np.float32)


class Recommender:
    """A next-item recommender over one prepared dataset's catalogue."""

    def __init__(
        self,
        config: RunConfig | None = None,
        *,
        model: str | None = None,
        item_repr: str | None = None,
    ) -> None:
        cfg = config or RunConfig()
        changes = {}
        if model is not None:
            changes["name"] = model
        if item_repr is not None:
            changes["item_repr"] = item_repr
        if changes:
            cfg = cfg.replace(model=_replace(cfg.model, **changes))
        self.config = cfg
        self.model: NextItemModel | None = None  # the weights that score (refit ones if any)
        # with train.refit: the weights trained on the training split only, for validation
        self.valid_model: NextItemModel | None = None
        self.dataset: PreparedDataset | None = None
        self.meta: dict[str, Any] = {}
        # the recipe the config came from (chronorec.recipes.resolve), recorded with the run
        self.recipe: dict[str, Any] | None = None
        self.result: TrainResult | None = None
        self.best_epoch = 0  # the epoch validation picked (from fit, or the run's metrics)
        self._items: pl.DataFrame | None = None
        self._arrays: EventArrays | None = None
        self._user_index: dict[str, int] | None = None
        self._item_index: dict[str, int] | None = None

    # ------------------------------------------------------------------ training

    def fit(
        self,
        dataset: PreparedDataset | str | Path,
        *,
        split: Split | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        text_vectors: np.ndarray | None = None,
        progress: bool = True,
    ) -> Recommender:
        """Train on ``split.train`` (default: the split named by the config), early-stopping on
        the validation metric ``train.select_metric`` (NDCG@10 by default). With ``run_dir``
        every epoch is checkpointed there and ``resume`` continues an interrupted run."""
        cfg = self.config
        dataset_path = None
        if not isinstance(dataset, PreparedDataset):
            dataset_path = str(Path(dataset).resolve())
            dataset = load_prepared(dataset)
        if cfg.train.target in ("next-basket", "next-window") and not dataset.has_timestamps:
            raise ConfigError(
                f"train.target = {cfg.train.target!r} needs timestamps (a basket is the events "
                "of one timestamp), and this dataset has none"
            )
        if cfg.model.repeat_visits and not dataset.has_timestamps:
            raise ConfigError(
                "model.repeat_visits needs timestamps (a visit is the events of one timestamp), "
                "and this dataset has none"
            )
        split = split if split is not None else make_split(dataset, cfg)
        if cfg.model.item_repr != "id" and text_vectors is None:
            text_vectors = build_text_vectors(dataset, cfg)
        text = None if text_vectors is None else torch.from_numpy(np.asarray(text_vectors))
        if text is not None and text.shape[0] != dataset.n_items + 1:
            raise ConfigError(
                f"text matrix has {text.shape[0]} rows; the catalogue needs n_items + 1 = "
                f"{dataset.n_items + 1}"
            )
        top = dataset.events["behaviour"].max()
        n_behaviours = max(len(dataset.behaviours), int(top) if top is not None else 1)  # type: ignore[arg-type]  # an integer column
        torch.manual_seed(cfg.train.seed)
        self.model = _new_model(cfg, dataset.n_items, n_behaviours, text)
        self.model.tower.set_known_items(
            torch.from_numpy(split.train["item"].unique().to_numpy().astype(np.int64))
        )
        self._attach(dataset)
        self.meta = {
            "chronorec_version": __version__,
            "n_items": dataset.n_items,
            "n_behaviours": n_behaviours,
            "behaviours": dataset.behaviours,
            "text_dim": None if text is None else int(text.shape[1]),
            "dataset": dataset_path,
            "protocol": split.protocol,
        } | ({"recipe": self.recipe} if self.recipe else {})
        run = Path(run_dir) if run_dir is not None else None
        if run is not None:  # under torchrun every process checks, rank 0 alone writes
            if resume and (run / ckpt.CONFIG_FILE).is_file():
                raw = ckpt.read_json(run / ckpt.CONFIG_FILE)["config"]
                saved = RunConfig.from_dict(raw, source=str(run / ckpt.CONFIG_FILE)).to_dict()
                now = cfg.to_dict()
                # A resumed run may get a new budget; anything else must match what was trained.
                for budget in RESUMABLE_CHANGES:
                    saved["train"].pop(budget, None)
                    now["train"].pop(budget, None)
                if saved != now:
                    raise ConfigError(
                        f"{run}: --resume with a different config than the run's (only "
                        f"{', '.join('train.' + b for b in RESUMABLE_CHANGES)} may change)"
                    )
            if distributed.is_main():
                self._write_run_files(run)

        arrays = EventArrays.from_events(dataset.events, n_users=dataset.n_users)
        exclude = cfg.data.exclude_seen

        def validate(model: NextItemModel) -> dict[str, float]:
            """Validation metrics of ``model``'s weights (the averaged ones with train.ema)."""
            from chronorec.evaluation import evaluate

            live, self.model = self.model, model
            try:
                result = evaluate(
                    self, arrays, split.valid, n_items=dataset.n_items, exclude_seen=exclude,
                    max_len=cfg.model.max_len, batch_size=cfg.train.eval_batch_size, slices=(),
                )  # fmt: skip
            finally:
                self.model = live
            return {k: float(v) for k, v in result.metrics.items()}

        self.result = train(
            self.model,
            EventArrays.from_events(split.train, n_users=dataset.n_users),
            cfg.train,
            validate=validate if split.valid.height else None,
            run_dir=run,
            resume=resume,
            progress=progress,
        )
        self.model.eval()
        self.best_epoch = self.result.best_epoch
        if cfg.train.refit and split.valid.height:
            self._refit(dataset, split, n_behaviours, text, run, progress)
        return self

    def _refit(
        self,
        dataset: PreparedDataset,
        split: Split,
        n_behaviours: int,
        text: torch.Tensor | None,
        run: Path | None,
        progress: bool,
    ) -> None:
        """Train the run's recipe again from scratch on ``split.before_test`` for the best
        epoch's count of epochs (no validation: every validation target is in it)."""
        assert self.model is not None and self.result is not None
        model, self.meta["refit"] = self._train_fresh(
            dataset, split.before_test, max(self.result.best_epoch, 1), n_behaviours, text,
            progress,
        )  # fmt: skip
        self.valid_model, self.model = self.model, model
        if run is not None and distributed.is_main():
            ckpt.save_weights(run / ckpt.REFIT_WEIGHTS_FILE, model)
            self._write_run_files(run)  # meta now names the refit, written after its weights

    def _train_fresh(
        self,
        dataset: PreparedDataset,
        events: pl.DataFrame,
        epochs: int,
        n_behaviours: int,
        text: torch.Tensor | None,
        progress: bool,
    ) -> tuple[NextItemModel, dict[str, Any]]:
        """A new model of this config trained on ``events`` for ``epochs`` epochs, without
        validation, and what it was trained on (epochs, events, minutes)."""
        cfg = self.config
        started = time.perf_counter()
        torch.manual_seed(cfg.train.seed)
        model = _new_model(cfg, dataset.n_items, n_behaviours, text)
        model.tower.set_known_items(
            torch.from_numpy(events["item"].unique().to_numpy().astype(np.int64))
        )
        recipe = dataclasses.replace(cfg.train, max_epochs=epochs, max_minutes=None)
        done = train(
            model, EventArrays.from_events(events, n_users=dataset.n_users), recipe,
            progress=progress,
        )  # fmt: skip
        model.eval()
        trained = {
            "epochs": done.epochs,
            "events": events.height,
            "minutes": round((time.perf_counter() - started) / 60, 3),
        }
        return model, trained

    def refit_all(self, *, epochs: int | None = None, progress: bool = True) -> Recommender:
        """A new :class:`Recommender` with this recipe trained from scratch on *every* event of
        the dataset — the validation and test periods included — for deployment.

        ``epochs`` defaults to the count validation picked: the best epoch of :meth:`fit`, or
        the refit's count for a run trained with ``train.refit``. The returned recommender
        cannot be evaluated (it has seen every target); evaluate the run it came from."""
        dataset = self._require_dataset()
        self._require_model()
        if epochs is None:
            if "refit" in self.meta:
                epochs = int(self.meta["refit"]["epochs"])
            elif self.best_epoch > 0:
                epochs = self.best_epoch
            else:
                raise ChronorecError(
                    "no validated epoch count to refit for: pass epochs (the run was never "
                    "validated)"
                )
        if epochs < 1:
            raise ChronorecError(f"epochs must be at least 1, not {epochs}")
        text = None
        if self.config.model.item_repr != "id":
            text = torch.from_numpy(build_text_vectors(dataset, self.config))
        n_behaviours = int(self.meta["n_behaviours"])
        rec = Recommender(self.config.replace(train=_replace(self.config.train, refit=False)))
        rec.model, trained = self._train_fresh(
            dataset, dataset.events, epochs, n_behaviours, text, progress
        )
        rec.meta = {k: v for k, v in self.meta.items() if k != "refit"}
        rec.meta["chronorec_version"] = __version__
        rec.meta["trained_on_all"] = trained
        rec._attach(dataset)
        return rec

    def finetune(
        self,
        events: pl.DataFrame,
        *,
        users: np.ndarray | None = None,
        epochs: int = FINETUNE_EPOCHS,
        lr_scale: float = FINETUNE_LR_SCALE,
        progress: bool = True,
    ) -> Recommender:
        """A new :class:`Recommender` whose weights continue from this one's, trained further on
        the histories in ``events`` — minutes instead of a retrain's hours, for a model that
        keeps up with new events between full retrains.

        ``events`` is a log in this catalogue's rows with a prepared dataset's columns (``user,
        item, timestamp, behaviour, position``, sorted by ``(user, position)``; user rows past
        the dataset's are new users), usually the dataset's log with the new events appended
        (:func:`chronorec.data.merge.merged_log`). Only the latest window of each user in
        ``users`` (default: every user of ``events``) is trained on — the users with new
        events, each with the history before them — for ``epochs`` epochs at ``lr_scale`` × the
        recipe's learning rate, with a fresh optimiser, no warm-up and no validation. Items with
        events get learned ids from now on. The catalogue and the attached dataset stay as they
        are; the result cannot be evaluated on this dataset's splits (its new events may come
        after their targets)."""
        model = self._require_model()
        if epochs < 1:
            raise ChronorecError(f"epochs must be at least 1, not {epochs}")
        if lr_scale <= 0:
            raise ChronorecError(f"lr_scale must be > 0, not {lr_scale}")
        started = time.perf_counter()
        tuned = copy.deepcopy(model)
        items = events["item"].to_numpy().astype(np.int64)
        if items.size and (items.min() < 1 or items.max() > tuned.n_items):
            raise DataError(
                f"events name item rows outside this catalogue's 1..{tuned.n_items}: fine-tuning "
                "keeps the catalogue; train again for new items (they are served through the "
                "text tower until then)"
            )
        if tuned.cfg.item_repr == "id+text":
            known = torch.unique(torch.cat([
                tuned.tower.id_known.nonzero()[:, 0], torch.from_numpy(np.unique(items))
            ]))  # fmt: skip
            tuned.tower.set_known_items(known)
        cfg = self.config
        recipe = dataclasses.replace(
            cfg.train, max_epochs=epochs, max_minutes=None, lr=cfg.train.lr * lr_scale,
            warmup_steps=0, lr_decay="none", decay_start=0.0, all_windows=False, refit=False,
        )  # fmt: skip
        chosen = None if users is None else np.asarray(users, dtype=np.int64)
        arrays = EventArrays.from_events(events)
        lengths = arrays.user_lengths()
        picked = lengths if chosen is None else lengths[chosen[chosen < lengths.size]]
        if not (picked >= 2).any():
            raise ChronorecError(
                "no user to fine-tune on has two events in the log: nothing to learn from"
            )
        done = train(
            tuned, arrays, recipe, progress=progress, only_users=chosen,
        )  # fmt: skip
        tuned.eval()
        rec = Recommender(cfg)
        rec.model = tuned
        rec.best_epoch = self.best_epoch
        rec.meta = {k: v for k, v in self.meta.items() if k != "refit"}
        rec.meta["chronorec_version"] = __version__
        trained_users = int(np.unique(events["user"]).size if chosen is None else chosen.size)
        rec.meta["finetuned"] = [
            *self.meta.get("finetuned", []),
            {
                "epochs": done.epochs,
                "users": trained_users,
                "events": events.height,
                "lr_scale": lr_scale,
                "minutes": round((time.perf_counter() - started) / 60, 3),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        ]
        if self.dataset is not None:
            rec._attach(self.dataset)
        else:
            rec._items = self._items
        return rec

    @contextlib.contextmanager
    def at(self, which: str, *, first_weights: bool = False) -> Iterator[Recommender]:
        """Score with the weights for ``which``: after a refit, validation uses the weights
        trained on the training split only (the refit ones have seen its targets).
        ``first_weights`` uses those for the test split too (to measure what the refit adds)."""
        if which not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', not {which!r}")
        if "trained_on_all" in self.meta:
            source = self.meta["trained_on_all"].get("from")
            raise ChronorecError(
                "this model was trained on every event (chronorec refit), the validation and "
                "test targets included, so it cannot be evaluated: evaluate the run it was "
                "refitted from" + (f", {source}" if source else "")
            )
        if "finetuned" in self.meta:
            raise ChronorecError(
                "this model was fine-tuned on events after its dataset's (chronorec finetune), "
                "which may come after the validation and test targets, so it cannot be evaluated "
                "on them: evaluate the run it was fine-tuned from"
            )
        scoring = self.model
        if (which == "valid" or first_weights) and self.valid_model is not None:
            self.model = self.valid_model
        try:
            yield self
        finally:
            self.model = scoring

    # ------------------------------------------------------------------ scoring

    def _require_model(self) -> NextItemModel:
        if self.model is None:
            raise ChronorecError("this Recommender is not fitted: call fit() or load() first")
        return self.model

    @torch.no_grad()
    def score(self, batch: HistoryBatch, users: np.ndarray | None = None) -> torch.Tensor:
        """Scores ``(B, n_items + 1)`` of every item after each history; column 0 is -inf."""
        scores, bonus = self._score_parts(batch)
        return scores if bonus is None else scores + bonus

    @torch.no_grad()
    def score_parts(self, batch: HistoryBatch) -> dict[str, torch.Tensor]:
        """The two terms of :meth:`score`, each ``(B, n_items + 1)``: ``"hidden"``, the hidden
        state's scores (column 0 -inf), and ``"repeat"``, the repeat term's bonus for items
        already in the history (zeros without ``model.repeat``)."""
        scores, bonus = self._score_parts(batch)
        return {"hidden": scores, "repeat": torch.zeros_like(scores) if bonus is None else bonus}

    def _score_parts(self, batch: HistoryBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        model = self._require_model()
        model.eval()
        table = model.item_table()  # (V, D)
        hidden = _last_hidden(model, batch, table)  # (B, D)
        items = torch.from_numpy(batch.items)
        scores = model.scores(hidden, items[:, -1], table)  # (B, V)
        bonus = model.repeat_bonus(
            items, torch.from_numpy(batch.behaviours), torch.from_numpy(batch.timestamps)
        )  # (B, V) or None
        return scores, bonus

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """``(n_items, Q)`` float32: the rows a user vector scores against, ``item_ids()``
        order. ``user_vectors(...) @ item_vectors().T`` are the model's scores (the text score
        term and a cosine head's temperature included; the repeat term is not, see
        :meth:`user_vectors`) — an inner-product ANN index over them ranks as the model does."""
        model = self._require_model()
        model.eval()
        return model.score_rows(model.item_table())[1:].float().numpy()

    @torch.no_grad()
    def user_vectors(self, users: Sequence[str] | None = None, *, batch_size: int = 512
                     ) -> tuple[list[str], np.ndarray]:  # fmt: skip
        """``(user ids, (U, Q) float32)``: each user's query after their whole logged history
        (default: every user of the dataset), in the space of :meth:`item_vectors`. A model with
        ``model.repeat`` also adds a bonus for items already in the history, which depends on
        the history and is left out here."""
        model = self._require_model()
        model.eval()
        dataset = self._require_dataset()
        ids = [str(u) for u in dataset.users["user_id"].to_list()] if users is None else list(users)
        if not ids:
            return ids, np.zeros((0, self.item_vectors().shape[1]), np.float32)
        table = model.item_table()
        parts = []
        for start in range(0, len(ids), batch_size):
            batch, _ = self.user_batch(ids[start : start + batch_size], self.config.model.max_len)
            hidden = _last_hidden(model, batch, table)  # (B, D)
            last = torch.from_numpy(batch.items[:, -1])
            parts.append(model.score_query(hidden, model.last_text(last)).float().numpy())
        return ids, np.concatenate(parts)

    def _exclude(self, exclude_seen: bool | None) -> bool:
        """Whether a ranking leaves the history's items out: as asked, else as the run's
        ``data.exclude_seen`` says (as its evaluation ranked)."""
        return self.config.data.exclude_seen if exclude_seen is None else exclude_seen

    def recommend(
        self,
        users: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        allow: Sequence[str] | None = None,
        block: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` items for known users (their own ids) after their whole logged history;
        ``exclude_seen`` (default: the run's ``data.exclude_seen``) leaves their items out.

        Returns ``(item_ids, scores)``: ``B`` lists of item ids and a ``(B, k')`` score array
        (``k'`` may be below ``k`` when fewer items are allowed)."""
        batch, rows = self.user_batch(users, self.config.model.max_len)
        return self.top_k(
            self.score(batch), k, rows if self._exclude(exclude_seen) else None, allow, block
        )

    def recommend_histories(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        *,
        timestamps: Sequence[Sequence[int]] | None = None,
        behaviours: Sequence[Sequence[str]] | None = None,
        exclude_seen: bool | None = None,
        allow: Sequence[str] | None = None,
        block: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` for ad-hoc histories of item ids (oldest first), e.g. a new user's session.

        ``timestamps`` are seconds; ``behaviours`` are behaviour names (default: the first).
        Unknown item ids are an error: a model can only read items of its catalogue."""
        batch, rows = self.history_batch(
            histories, self.config.model.max_len, timestamps=timestamps, behaviours=behaviours
        )
        return self.top_k(
            self.score(batch), k, rows if self._exclude(exclude_seen) else None, allow, block
        )

    def user_batch(
        self, users: Sequence[str], max_len: int
    ) -> tuple[HistoryBatch, list[np.ndarray]]:
        """The last ``max_len`` events of known users (their own ids) as a batch, and each
        user's whole history of item indices."""
        self._require_dataset()
        assert self._user_index is not None and self._arrays is not None
        missing = [u for u in users if str(u) not in self._user_index]
        if missing:
            raise DataError(f"unknown user id {missing[0]!r} (not in the dataset's users)")
        idx = np.array([self._user_index[str(u)] for u in users], dtype=np.int64)
        lengths = self._arrays.user_lengths()[idx]
        batch = self._arrays.histories(idx, lengths, max_len)
        offsets, items = self._arrays.offsets, self._arrays.items
        return batch, [items[offsets[u] : offsets[u + 1]] for u in idx]

    def history_batch(
        self,
        histories: Sequence[Sequence[str]],
        max_len: int,
        *,
        timestamps: Sequence[Sequence[int]] | None = None,
        behaviours: Sequence[Sequence[str]] | None = None,
    ) -> tuple[HistoryBatch, list[np.ndarray]]:
        """Ad-hoc histories of item ids (oldest first) as a batch of their last ``max_len``
        events, and each history's item indices; unknown ids, behaviours or a timestamp count
        that does not match are :class:`DataError`."""
        index = self._item_lookup()
        names = [b.lower() for b in self.meta.get("behaviours", [])]
        B = len(histories)
        items = np.zeros((B, max_len), dtype=np.int64)
        behs = np.zeros((B, max_len), dtype=np.int64)
        times = np.zeros((B, max_len), dtype=np.int64)
        rows = []
        for b, history in enumerate(histories):
            unknown = [i for i in history if str(i) not in index]
            if unknown:
                raise DataError(f"history {b}: unknown item id {unknown[0]!r}")
            row = np.array([index[str(i)] for i in history], dtype=np.int64)
            rows.append(row)
            n = min(len(row), max_len)
            if n == 0:
                continue
            items[b, -n:] = row[-n:]
            if behaviours is not None:
                bad = [x for x in behaviours[b] if x.lower() not in names]
                if bad or len(behaviours[b]) != len(row):
                    raise DataError(f"history {b}: behaviours must be one of {names} per item")
                behs[b, -n:] = [names.index(x.lower()) + 1 for x in behaviours[b]][-n:]
            else:
                behs[b, -n:] = 1
            if timestamps is not None:
                if len(timestamps[b]) != len(row):
                    raise DataError(
                        f"history {b}: {len(timestamps[b])} timestamps for {len(row)} items"
                    )
                if any(t is None for t in timestamps[b]):
                    raise DataError(f"history {b}: a timestamp is missing (give all or none)")
                times[b, -n:] = np.asarray(timestamps[b], dtype=np.int64)[-n:]
        lengths = np.array([min(len(r), max_len) for r in rows], dtype=np.int64)
        batch = HistoryBatch(items=items, behaviours=behs, timestamps=times, lengths=lengths)
        return batch, rows

    def top_k(
        self,
        scores: torch.Tensor,
        k: int,
        seen: Sequence[np.ndarray] | None,
        allow: Sequence[str] | None,
        block: Sequence[str] | None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` best of ``(B, n_items + 1)`` scores as item ids and scores, leaving out each
        row's ``seen`` item indices, items outside ``allow`` and items in ``block``."""
        scores = scores.clone()
        for b, row in enumerate(seen or ()):
            scores[b, torch.from_numpy(np.asarray(row, dtype=np.int64))] = float("-inf")
        if allow is not None:
            keep = torch.zeros(scores.shape[1], dtype=torch.bool)
            keep[self._indices(allow)] = True
            scores[:, ~keep] = float("-inf")
        if block is not None:
            scores[:, self._indices(block)] = float("-inf")
        scores[:, 0] = float("-inf")
        n_ok = int(torch.isfinite(scores).sum(1).min()) if scores.numel() else 0
        top = torch.topk(scores, min(k, n_ok), dim=1)
        ids = self.item_ids()
        return [[ids[i - 1] for i in row] for row in top.indices.tolist()], top.values.numpy()

    def _indices(self, item_ids: Sequence[str]) -> torch.Tensor:
        index = self._item_lookup()
        unknown = [i for i in item_ids if str(i) not in index]
        if unknown:
            raise DataError(f"unknown item id {unknown[0]!r} in allow/block list")
        return torch.tensor([index[str(i)] for i in item_ids], dtype=torch.long)

    # ------------------------------------------------------------------ catalogue

    def item_ids(self) -> list[str]:
        """The dataset's own item ids; ``item_ids()[i - 1]`` is item index ``i``."""
        return self._catalogue()["item_id"].cast(pl.String).to_list()

    def item_names(self) -> list[str]:
        """A display name per item (its title where the catalogue has one, else its id)."""
        items = self._catalogue()
        for col in NAME_COLUMNS:
            if col in items.columns:
                return items[col].cast(pl.String).fill_null("").to_list()
        return self.item_ids()

    def _catalogue(self) -> pl.DataFrame:
        if self._items is None:
            raise ChronorecError("no catalogue: fit() or load() the recommender first")
        return self._items

    def _item_lookup(self) -> dict[str, int]:
        if self._item_index is None:
            self._item_index = {item: i + 1 for i, item in enumerate(self.item_ids())}
        return self._item_index

    def _require_dataset(self) -> PreparedDataset:
        if self.dataset is None:
            raise ChronorecError(
                "no event log attached: load the run with its dataset (load(run, dataset=...)) "
                "or recommend for an ad-hoc history"
            )
        return self.dataset

    def _attach(self, dataset: PreparedDataset) -> None:
        self.dataset = dataset
        columns = ["item", "item_id"] + [c for c in NAME_COLUMNS if c in dataset.items.columns]
        self._items = dataset.items.select(columns).sort("item")
        self._arrays = EventArrays.from_events(dataset.events, n_users=dataset.n_users)
        self._user_index = {
            str(u): int(i) for i, u in zip(dataset.users["user"], dataset.users["user_id"],
                                           strict=True)
        }  # fmt: skip
        self._item_index = None

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        which: str = "test",
        *,
        exclude_seen: bool | None = None,
        progress: bool = False,
        first_weights: bool = False,
        **options: Any,
    ) -> Any:
        """Full-ranking :func:`chronorec.evaluation.evaluate` of this model on the config's split
        (``which`` = "valid" or "test"), with the weights for it (:meth:`at`; ``first_weights``
        for a refit run's weights before the refit). Cold/warm slices: the cold-start
        protocol's hidden items when ``data.cold_fraction > 0``, else the items absent from the
        events the weights were trained on."""
        from chronorec.evaluation import evaluate

        dataset = self._require_dataset()
        split = make_split(dataset, self.config)
        exclude = self.config.data.exclude_seen if exclude_seen is None else exclude_seen
        if self.config.data.cold_fraction > 0:
            options.setdefault("cold_items", cold_items(dataset, self.config))
        trained_on = split.train
        if self.valid_model is not None and not first_weights:
            trained_on = split.known(which)  # type: ignore[arg-type]  # checked by Split
        with self.at(which, first_weights=first_weights):
            return evaluate(
                self, dataset, split.targets(which),  # type: ignore[arg-type]  # checked by Split
                exclude_seen=exclude, max_len=self.config.model.max_len,
                batch_size=self.config.train.eval_batch_size, train=trained_on,
                progress=progress, **options,
            )  # fmt: skip

    @torch.no_grad()
    def behaviour_probabilities(self, batch: HistoryBatch, items: np.ndarray) -> np.ndarray:
        """``P(behaviour = b | history, item)`` from the behaviour head: histories ``batch`` and
        candidate item indices ``items`` (B, K) -> (B, K, n_behaviours); ``[..., b - 1]`` is
        behaviour index ``b``."""
        model = self._require_model()
        model.eval()
        table = model.item_table()
        hidden = _last_hidden(model, batch, table)  # (B, D)
        window = (torch.from_numpy(batch.items), torch.from_numpy(batch.behaviours))
        logits = model.behaviour_logits(
            hidden, torch.from_numpy(items), table, window
        )  # (B, K, n_b)
        return logits.softmax(-1).numpy()

    def behaviour_auc(self, which: str = "test", behaviour: int | None = None) -> float:
        """ROC AUC of ``P(behaviour | history, target item)`` for telling the split's targets of
        ``behaviour`` (default: the last, e.g. "buy") from its other targets."""
        b = behaviour if behaviour is not None else self._require_model().n_behaviours
        return self.behaviour_aucs(which, [b])[b]

    def behaviour_aucs(
        self, which: str = "test", behaviours: Sequence[int] | None = None
    ) -> dict[int, float]:
        """:meth:`behaviour_auc` of each behaviour index in ``behaviours`` (default: all), from
        one pass over the split's targets; NaN where the targets hold only one class."""
        dataset = self._require_dataset()
        assert self._arrays is not None
        targets = make_split(dataset, self.config).targets(which)  # type: ignore[arg-type]
        n_b = self._require_model().n_behaviours
        users = targets["user"].to_numpy().astype(np.int64)
        hlens = targets["history_len"].to_numpy().astype(np.int64)
        items = targets["item"].to_numpy().astype(np.int64)
        probs = np.empty((users.size, n_b), dtype=np.float64)
        step = self.config.train.eval_batch_size
        with self.at(which):
            for s in range(0, users.size, step):
                batch = self._arrays.histories(users[s : s + step], hlens[s : s + step],
                                               self.config.model.max_len)  # fmt: skip
                probs[s : s + step] = self.behaviour_probabilities(
                    batch, items[s : s + step, None]
                )[:, 0]
        logged = targets["behaviour"].to_numpy()
        wanted = range(1, n_b + 1) if behaviours is None else behaviours
        return {b: _roc_auc(probs[:, b - 1], logged == b) for b in wanted}

    # ------------------------------------------------------------------ persistence

    def _write_run_files(self, run: Path) -> None:
        run.mkdir(parents=True, exist_ok=True)
        ckpt.write_json(
            run / ckpt.CONFIG_FILE, {"config": self.config.to_dict(), "meta": self.meta}
        )
        items = self._catalogue()
        ckpt.atomic_write(run / ckpt.ITEMS_FILE, lambda tmp: items.write_parquet(tmp))

    def save(self, path: str | Path) -> Path:
        """Write config, catalogue ids and weights: enough for :meth:`load` to rebuild it."""
        model = self._require_model()
        run = Path(path)
        self._write_run_files(run)
        if self.valid_model is not None:
            ckpt.save_weights(run / ckpt.WEIGHTS_FILE, self.valid_model)
            ckpt.save_weights(run / ckpt.REFIT_WEIGHTS_FILE, model)
        else:
            ckpt.save_weights(run / ckpt.WEIGHTS_FILE, model)
        return run

    @classmethod
    def load(
        cls, path: str | Path, dataset: PreparedDataset | str | Path | None = None
    ) -> Recommender:
        """Rebuild from a run directory. ``dataset`` (or the path recorded at fit time, when it
        still exists) supplies the event log for known users and evaluation."""
        run = Path(path)
        if not (run / ckpt.CONFIG_FILE).is_file():
            raise ChronorecError(f"{run}: not a chronorec run (no {ckpt.CONFIG_FILE})")
        if not (run / ckpt.WEIGHTS_FILE).is_file():
            raise ChronorecError(
                f"{run}: no {ckpt.WEIGHTS_FILE} yet (training has not finished an epoch)"
            )
        saved = ckpt.read_json(run / ckpt.CONFIG_FILE)
        raw = saved["config"]
        model_raw = raw.get("model")
        if isinstance(model_raw, dict) and "behaviour_features" not in model_raw:
            # saved before the behaviour head read history features: it has no inputs for them
            raw = {**raw, "model": {**model_raw, "behaviour_features": False}}
        cfg = RunConfig.from_dict(raw, source=str(run / ckpt.CONFIG_FILE))
        meta = saved["meta"]
        rec = cls(cfg)
        rec.meta = meta
        text = None
        if meta.get("text_dim"):
            text = torch.zeros(meta["n_items"] + 1, meta["text_dim"])  # filled by the weights
        rec.model = _new_model(cfg, meta["n_items"], meta["n_behaviours"], text)
        ckpt.load_weights(run / ckpt.WEIGHTS_FILE, rec.model)
        rec.model.eval()
        if (run / ckpt.METRICS_FILE).is_file():
            rec.best_epoch = int(ckpt.read_json(run / ckpt.METRICS_FILE).get("best_epoch", 0))
        if "refit" in meta:  # written with the refit weights, after them
            refit = _new_model(cfg, meta["n_items"], meta["n_behaviours"], text)
            ckpt.load_weights(run / ckpt.REFIT_WEIGHTS_FILE, refit)
            rec.valid_model, rec.model = rec.model, refit.eval()
        if dataset is None and meta.get("dataset") and Path(meta["dataset"]).is_dir():
            dataset = meta["dataset"]
        if isinstance(dataset, str | Path):
            dataset = load_prepared(dataset)
        if dataset is not None:
            if dataset.n_items != meta["n_items"]:
                raise DataError(
                    f"dataset has {dataset.n_items} items, the run was trained on {meta['n_items']}"
                )
            rec._attach(dataset)
        else:
            rec._items = pl.read_parquet(run / ckpt.ITEMS_FILE)
        return rec


def _last_hidden(model: NextItemModel, batch: HistoryBatch, table: torch.Tensor) -> torch.Tensor:
    """The model's hidden state (B, D) after the last step of each history in ``batch``."""
    return model(
        torch.from_numpy(batch.items),
        torch.from_numpy(batch.behaviours),
        torch.from_numpy(batch.timestamps),
        table,
        last_only=True,
    )[:, -1]


def _roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties; NaN when one class is empty."""
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.arange(1, scores.size + 1)
    uniq, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    if uniq.size < scores.size:  # average the ranks of tied scores
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)
