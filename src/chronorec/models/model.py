"""The next-item model: item tower + per-step features + one sequence encoder + heads.

``forward(items, behaviours, timestamps) -> hidden (B, L, D)``: the state after each step, which
predicts the step after it. ``scores(hidden, table)`` ranks the whole catalogue.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from chronorec.config import ModelConfig
from chronorec.errors import ConfigError
from chronorec.models.gru import GRUEncoder
from chronorec.models.heads import BehaviourHead, ScoreHead, history_features
from chronorec.models.hstu import HSTUEncoder
from chronorec.models.inputs import time_gap_buckets
from chronorec.models.lstm import LSTMEncoder
from chronorec.models.repeat import RepeatBias, SparseBias
from chronorec.models.tower import ItemTower
from chronorec.models.transformer import TransformerEncoder

AGE_BUCKETS = 16  # repeat term by time since an occurrence: log2 hours, up to ~4 years
TEXT_LAST_INIT = 5.0  # a cosine of 1 to the last item's text starts as a logit gap of 5
# next_scale is stored divided by this, so that the optimiser's step, sized for embeddings, moves
# these few log-scales that much faster (as RepeatBias's weights; a run has a few hundred steps)
NEXT_SCALE_RATE = 10.0

ENCODERS: dict[str, type[nn.Module]] = {
    "lstm": LSTMEncoder,
    "gru": GRUEncoder,
    "transformer": TransformerEncoder,
    "hstu": HSTUEncoder,
}


class NextItemModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        n_items: int,
        n_behaviours: int,
        text_vectors: torch.Tensor | None = None,
        rank_behaviour: int | None = None,
    ) -> None:
        """``rank_behaviour``: with ``cfg.next_behaviour``, the behaviour (1-based) whose next
        event :meth:`scores`, :meth:`score_query` and :meth:`repeat_bonus` rank for."""
        super().__init__()
        if cfg.next_behaviour and not (rank_behaviour and 1 <= rank_behaviour <= n_behaviours):
            raise ConfigError(
                f"model.next_behaviour ranks for data.target_behaviour, which must be one of the "
                f"log's behaviours 1..{n_behaviours}, not {rank_behaviour}"
            )
        self.cfg = cfg
        self.n_items = n_items
        self.n_behaviours = n_behaviours
        self.rank_behaviour = rank_behaviour if cfg.next_behaviour else None
        D = cfg.d_model
        self.tower = ItemTower(
            n_items,
            D,
            cfg.item_repr,
            text_vectors=text_vectors,
            text_hidden=cfg.text_hidden,
            dropout=cfg.dropout,
        )
        self.behaviour_emb = nn.Embedding(n_behaviours + 1, D, padding_idx=0)
        self.time_emb = nn.Embedding(cfg.n_time_buckets, D, padding_idx=0)
        for emb in (self.behaviour_emb, self.time_emb):
            nn.init.normal_(emb.weight, std=D**-0.5)
            with torch.no_grad():
                emb.weight[0].zero_()
        self.encoder = ENCODERS[cfg.name](cfg)
        self.head = ScoreHead(cfg.score, cfg.temperature)
        # scores against a second ID table (the input table then only reads the history)
        self.out_emb: nn.Embedding | None = None
        if cfg.separate_output:
            self.out_emb = nn.Embedding(n_items + 1, D, padding_idx=0)
            nn.init.normal_(self.out_emb.weight, std=D**-0.5)
        self.behaviour_head = (
            BehaviourHead(
                D,
                n_behaviours,
                2 * n_behaviours if cfg.behaviour_features else 0,
                read_item=cfg.behaviour_item,
            )
            if cfg.behaviour_head
            else None
        )
        self.repeat = (
            RepeatBias(
                n_behaviours,
                n_age_buckets=AGE_BUCKETS if cfg.repeat_time else 0,
                visits=cfg.repeat_visits,
                by_next=cfg.next_behaviour,
            )
            if cfg.repeat
            else None
        )
        # Text score term: a query against the frozen text vectors at their full width, so that
        # items keep every distinction of the encoder (the adaptor squeezes them into D): a
        # learned map of the hidden state plus the last history item's own text vector, scaled
        # (item-KNN on text, a strong baseline on sparse catalogues, is the model's start).
        # Per behaviour of the predicted event, a linear map of the hidden state (identity +
        # next_map[b]) and an offset (next_emb[b]), both zero at the start: the model begins as
        # the unconditioned one. A map, not only an offset, so that "what is bought after this
        # history" can differ from "what is viewed next" item by item.
        # And a log-scale of the whole query (next_scale[b]): for a purchase, the items a user
        # viewed (the repeat term) may matter more than what the hidden state suggests.
        self.next_emb: nn.Embedding | None = None
        self.next_map: nn.Parameter | None = None
        self.next_scale: nn.Parameter | None = None
        if cfg.next_behaviour:
            self.next_emb = nn.Embedding(n_behaviours + 1, D)
            nn.init.zeros_(self.next_emb.weight)
            self.next_map = nn.Parameter(torch.zeros(n_behaviours + 1, D, D))
            self.next_scale = nn.Parameter(torch.zeros(n_behaviours + 1))
        self.text_query: nn.Linear | None = None
        self.text_last: nn.Parameter | None = None
        if cfg.text_score:
            self.text_query = nn.Linear(D, self.tower.text_vectors.shape[1], bias=False)
            nn.init.zeros_(self.text_query.weight)
            self.text_last = nn.Parameter(torch.tensor(TEXT_LAST_INIT))

    def item_table(self) -> torch.Tensor:
        """All item vectors ``(n_items + 1, D)``; row 0 is padding."""
        return self.tower()

    def forward(
        self,
        items: torch.Tensor,
        behaviours: torch.Tensor,
        timestamps: torch.Tensor,
        table: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """``items``/``behaviours``/``timestamps`` (B, L) int64, left-padded with 0 ->
        hidden (B, L, D), or (B, 1, D) after the last step only with ``last_only`` (cheaper for
        the transformer). Pass ``table`` (V, D) to reuse an item table computed once per step."""
        if table is None:
            table = self.item_table()
        mask = items > 0  # (B, L)
        x = table[items]  # (B, L, D)
        if self.cfg.use_behaviour:
            x = x + self.behaviour_emb(behaviours * mask)
        if self.cfg.use_time:
            x = x + self.time_emb(time_gap_buckets(timestamps, mask, self.cfg.n_time_buckets))
        return self.encoder(x, mask, timestamps, last_only=last_only)  # (B, L | 1, D)

    def score_query(
        self,
        hidden: torch.Tensor,
        last_text: torch.Tensor | None = None,
        next_behaviour: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden (..., D) -> the query (..., Q) with ``scores = query @ score_rows(...).T``.
        With the text score term also the text vectors (..., d_text) of each history's last
        item (None for an empty history). With ``cfg.next_behaviour`` the query is for an
        event of ``next_behaviour`` (...,) (training: each step's actual one; default: the
        model's rank behaviour)."""
        if self.next_emb is not None:
            hidden = self._condition(hidden, next_behaviour)
        q = self.head.query(hidden)  # (..., D)
        if self.text_query is not None and self.text_last is not None:
            t = self.text_query(hidden)  # (..., d_text)
            if last_text is not None:
                t = t + self.text_last * F.normalize(last_text.to(t.dtype), dim=-1)
            q = torch.cat([q, t], dim=-1)  # (..., D + d_text)
        if self.next_scale is not None:  # how much the scores count next to the repeat term
            b = self.rank_behaviour if next_behaviour is None else next_behaviour
            q = q * (NEXT_SCALE_RATE * self.next_scale[b]).exp()[..., None].to(q.dtype)
        return q

    def last_text(self, items: torch.Tensor) -> torch.Tensor | None:
        """The catalogue text vectors of items (...,) for :meth:`score_query`; None without the
        text score term."""
        return None if self.text_query is None else self.tower.text_vectors[items]

    @property
    def rows_are_the_table(self) -> bool:
        """Whether :meth:`score_rows` returns the item table itself (a plain dot product over
        the input table): a server then keeps one table, not two."""
        return self.head.kind == "dot" and self.text_query is None and self.out_emb is None

    def query_after(self, hidden: torch.Tensor, last_row: torch.Tensor) -> torch.Tensor:
        """The query (Q,) after a history whose hidden state is ``hidden`` (D,) and whose last
        item's row of :meth:`score_rows` is ``last_row`` (Q,): what a server scores its prepared
        rows with, for items posted after training too (their rows carry their text)."""
        last_text = None
        if self.text_query is not None:  # the prepared rows end with the normalised text
            last_text = last_row[-self.text_query.out_features :]
        return self.score_query(hidden, last_text)

    def score_rows(self, table: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Item-table rows (N, D) -> the rows (N, Q) that queries score against; with the text
        score term also their text vectors ``text`` (N, d_text) (default: the catalogue's).
        With ``separate_output`` the rows are those of the output table (the whole catalogue)."""
        if self.out_emb is not None:
            if table.shape[0] != self.out_emb.num_embeddings:
                raise ValueError("a model with a separate output table scores the whole catalogue")
            table = self.out_emb.weight.to(table.dtype)
        e = self.head.rows(table)  # (N, D)
        if self.text_query is None:
            return e
        if text is None:
            text = self.tower.text_vectors
        return torch.cat([e, F.normalize(text.to(e.dtype), dim=-1)], dim=-1)  # (N, D + d_text)

    def _condition(self, hidden: torch.Tensor, next_behaviour: torch.Tensor | None) -> torch.Tensor:
        """hidden (..., D) -> ``hidden + hidden @ next_map[b].T + next_emb[b]`` for the
        behaviour ``b`` of the predicted event: ``next_behaviour`` (...,), default the model's
        rank behaviour."""
        assert self.next_emb is not None and self.next_map is not None
        if next_behaviour is None:
            m = self.next_map[self.rank_behaviour]  # (D, D)
            b = self.next_emb.weight[self.rank_behaviour]  # (D,)
            return hidden + (hidden @ m.T.to(hidden.dtype)) + b.to(hidden.dtype)
        n_b, D = self.next_map.shape[0], self.next_map.shape[1]
        every = hidden @ self.next_map.reshape(n_b * D, D).T.to(hidden.dtype)  # (..., n_b * D)
        every = every.reshape(*hidden.shape[:-1], n_b, D)
        index = next_behaviour[..., None, None].expand(*hidden.shape[:-1], 1, D)
        mapped = every.gather(-2, index).squeeze(-2)  # (..., D)
        return hidden + mapped + self.next_emb(next_behaviour).to(hidden.dtype)

    def score_inputs(
        self,
        hidden: torch.Tensor,
        table: torch.Tensor,
        last: torch.Tensor,
        next_behaviour: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (..., D) after the history items ``last`` (...,) -> ``(q, e)`` with
        ``scores = q @ e.T`` over the catalogue table; losses take these."""
        q = self.score_query(hidden, self.last_text(last), next_behaviour)
        return q, self.score_rows(table)

    def scores(
        self, hidden: torch.Tensor, last: torch.Tensor, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """hidden (..., D) after the history items ``last`` (...,) -> scores over the catalogue
        (..., n_items + 1); column 0 is -inf."""
        if table is None:
            table = self.item_table()
        q, e = self.score_inputs(hidden, table, last)
        s = q @ e.T  # (..., V)
        s[..., 0] = float("-inf")
        return s

    def _seen(self, items: torch.Tensor, behaviours: torch.Tensor) -> torch.Tensor:
        """The behaviours the repeat term may see: as logged, or every event as behaviour 1 for a
        behaviour-blind model (``use_behaviour=false``), which must not weigh a purchase
        differently from a view anywhere."""
        return behaviours if self.cfg.use_behaviour else (items > 0).to(behaviours.dtype)

    def repeat_steps(
        self,
        items: torch.Tensor,
        behaviours: torch.Tensor,
        timestamps: torch.Tensor,
        next_behaviours: torch.Tensor | None = None,
    ) -> SparseBias | None:
        """The repeat term of every step of a training window (B, L), sparse (see
        :meth:`RepeatBias.forward`), or None when the model has no repeat bias."""
        if self.repeat is None:
            return None
        return self.repeat(items, self._seen(items, behaviours), timestamps, next_behaviours)

    def repeat_bonus(
        self, items: torch.Tensor, behaviours: torch.Tensor, timestamps: torch.Tensor
    ) -> torch.Tensor | None:
        """The repeat term after the last step of each history: (B, L) -> (B, n_items + 1), or
        None when the model has no repeat bias. Added to :meth:`scores` by every ranking path."""
        last = self.repeat_last(items, behaviours, timestamps)
        return None if last is None else last.dense(self.n_items + 1)

    def repeat_last(
        self, items: torch.Tensor, behaviours: torch.Tensor, timestamps: torch.Tensor
    ) -> SparseBias | None:
        """:meth:`repeat_bonus` in sparse form (cols = ``items``, (B, L) weights), valid for item
        rows appended after training too; None when the model has no repeat bias."""
        if self.repeat is None:
            return None
        return self.repeat.last_sparse(
            items, self._seen(items, behaviours), timestamps, next_behaviour=self.rank_behaviour
        )

    def behaviour_features(
        self, items: torch.Tensor, behaviours: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor | None:
        """What the behaviour head reads besides the hidden state (:func:`history_features`):
        window (B, L) and candidates (B, T, K) -> (B, T, K, F); None when it reads nothing."""
        head = self.behaviour_head
        if head is None or not head.n_features:
            return None
        return history_features(items, self._seen(items, behaviours), candidates, self.n_behaviours)

    def behaviour_logits(
        self,
        hidden: torch.Tensor,
        items: torch.Tensor,
        table: torch.Tensor | None = None,
        window: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """hidden (B, D) after the history ``window`` (items, behaviours), each (B, L), and
        candidate items (B, K) -> logits (B, K, n_behaviours). The window is needed by a head
        that reads history features."""
        if self.behaviour_head is None:
            raise ValueError("this model was built without a behaviour head")
        if table is None:
            table = self.item_table()
        e = table[items]  # (B, K, D)
        features = None
        if self.behaviour_head.n_features:
            if window is None:
                raise ValueError("this behaviour head reads the history window: pass it")
            features = history_features(
                window[0], self._seen(window[0], window[1]), items[:, None, :], self.n_behaviours
            )[:, 0]  # (B, K, F)
        return self.behaviour_head(hidden[:, None, :].expand_as(e), e, features)
