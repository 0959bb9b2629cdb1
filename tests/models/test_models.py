"""Known-answer tests of every sequence model: it learns the successor pattern, is causal and
ignores left padding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from chronorec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from chronorec.evaluation import evaluate
from chronorec.models import NextItemModel
from chronorec.recommender import Recommender, cold_items, make_split

MODELS = ["lstm", "gru", "transformer", "hstu"]


def tiny_config(name: str, item_repr: str = "id", **train: object) -> RunConfig:
    model = ModelConfig(
        name=name, item_repr=item_repr, d_model=32, n_layers=1, n_heads=2, dropout=0.0,
        max_len=8, text_hidden=32,
    )  # fmt: skip
    opts = dict(lr=1e-2, batch_size=16, max_epochs=40, warmup_steps=5, patience=40, eval_every=40,
                threads=1)  # fmt: skip
    opts.update(train)
    return RunConfig(model=model, train=TrainConfig(**opts))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", MODELS)
def test_every_model_learns_the_successor_pattern(successor, name):
    rec = Recommender(tiny_config(name)).fit(successor, progress=False)
    result = rec.evaluate("test")
    assert result["hr@1"] == 1.0


@pytest.mark.parametrize("item_repr", ["text", "id+text"])
def test_text_towers_learn_the_successor_pattern(successor, item_repr, random_text):
    text = random_text(successor.n_items)
    rec = Recommender(tiny_config("transformer", item_repr)).fit(
        successor, text_vectors=text, progress=False
    )
    assert rec.evaluate("test")["hr@1"] == 1.0


def test_linear_text_adaptor_has_no_mlp_and_learns_the_successor_pattern(successor, random_text):
    cfg = tiny_config("transformer", "text")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, text_hidden=0))
    rec = Recommender(cfg).fit(successor, text_vectors=random_text(successor.n_items, dim=32),
                               progress=False)  # fmt: skip
    adaptor = rec.model.tower.adaptor
    assert adaptor.mlp is None
    assert not any("mlp" in name for name, _ in adaptor.named_parameters())
    assert rec.evaluate("test")["hr@1"] == 1.0


def test_text_score_term_starts_as_text_knn_of_the_last_item_and_learns(successor, random_text):
    from chronorec.models.model import TEXT_LAST_INIT

    cfg = tiny_config("gru", "text")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, text_score=True))
    text = random_text(successor.n_items, dim=24)
    model = NextItemModel(cfg.model, successor.n_items, 2, text_vectors=torch.as_tensor(text))
    hidden = torch.randn(5, cfg.model.d_model)
    last = torch.tensor([1, 2, 3, 4, 20])
    with torch.no_grad():  # zero-initialised query map: plain scores + text-KNN of the last item
        plain = hidden @ model.item_table().T
        unit = torch.nn.functional.normalize(torch.as_tensor(text), dim=-1)
        knn = unit[last] @ unit.T  # (5, V) cosine to the last item's text
        want = plain + TEXT_LAST_INIT * knn
        torch.testing.assert_close(model.scores(hidden, last)[:, 1:], want[:, 1:])
    rec = Recommender(cfg).fit(successor, text_vectors=text, progress=False)
    assert rec.model is not None and rec.model.text_query is not None
    assert rec.model.text_query.weight.abs().sum() > 0
    q, e = rec.model.score_inputs(hidden, rec.model.item_table(), last)
    assert q.shape == (5, cfg.model.d_model + 24) and e.shape == (successor.n_items + 1, q.shape[1])
    assert rec.evaluate("test")["hr@1"] == 1.0


def _model(name: str, item_repr: str = "id") -> NextItemModel:
    torch.manual_seed(0)
    cfg = tiny_config(name, item_repr).model
    text = (
        torch.randn(21, 16, generator=torch.Generator().manual_seed(0))
        if item_repr != "id"
        else None
    )
    return NextItemModel(cfg, n_items=20, n_behaviours=2, text_vectors=text).eval()


def _inputs(items: list[list[int]]):
    it = torch.tensor(items)
    beh = (it > 0).long()
    ts = torch.cumsum((it > 0).long() * 3600, dim=1) * (it > 0)
    return it, beh, ts


@pytest.mark.parametrize("name", MODELS)
def test_changing_a_later_item_leaves_earlier_outputs_unchanged(name):
    model = _model(name)
    a = _inputs([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = _inputs([[0, 0, 3, 4, 5, 6, 19, 2]])
    with torch.no_grad():
        ha, hb = model(*a), model(*b)
    torch.testing.assert_close(ha[:, :6], hb[:, :6])
    assert not torch.allclose(ha[:, 6:], hb[:, 6:])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("item_repr", ["id", "id+text"])
def test_left_padding_does_not_change_the_last_hidden_state(name, item_repr):
    model = _model(name, item_repr)
    short = _inputs([[0, 3, 4, 5, 6]])
    long = _inputs([[0, 0, 0, 0, 3, 4, 5, 6]])
    batch = _inputs([[0, 0, 0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        h_short = model(*short)[:, -1]
        h_long = model(*long)[:, -1]
        h_batch = model(*batch)[:1, -1]
    torch.testing.assert_close(h_short, h_long, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_short, h_batch, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_last_only_forward_equals_the_last_step_of_the_full_forward(name):
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(name).model, n_layers=2)
    model = NextItemModel(cfg, n_items=20, n_behaviours=2).eval()
    items, beh, ts = _inputs([[0, 0, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 1, 2, 3]])
    full = model(items, beh, ts)  # (2, 8, D)
    last = model(items, beh, ts, last_only=True)  # (2, 1, D)
    assert last.shape == (2, 1, full.shape[-1])
    assert torch.allclose(last[:, 0], full[:, -1], atol=1e-5)


def test_scores_cover_the_catalogue_and_never_rank_padding():
    model = _model("transformer")
    with torch.no_grad():
        s = model.scores(model(*_inputs([[0, 1, 2]]))[:, -1], torch.tensor([2]))
    assert s.shape == (1, 21)
    assert s[0, 0] == float("-inf") and torch.isfinite(s[0, 1:]).all()


def test_cold_start_protocol_hides_items_and_text_still_embeds_them(successor, random_text):
    """data.cold_fraction hides items from every training input and target; the text tower still
    gives them a learned-adaptor vector (inductive), and evaluation reports cold vs warm."""
    cfg = tiny_config("transformer", "text", max_epochs=2)
    cfg = cfg.replace(data=DataConfig(cold_fraction=0.1, cold_seed=1))
    cold = cold_items(successor, cfg)
    assert cold.size == 2
    split = make_split(successor, cfg)
    assert not split.train["item"].is_in(cold.tolist()).any()
    rec = Recommender(cfg).fit(successor, text_vectors=random_text(20), progress=False)
    assert rec.model is not None
    with torch.no_grad():
        table = rec.model.item_table()
        untrained = rec.model.tower.adaptor(torch.zeros(1, 16))  # type: ignore[misc]
    for item in cold:
        assert not torch.allclose(table[item], untrained[0])
    result = rec.evaluate("test")
    assert {"cold", "warm"} <= set(result.slices)


def test_cosine_head_bounds_scores_by_the_temperature():
    cfg = tiny_config("gru").model
    model = NextItemModel(
        ModelConfig(**{**cfg.__dict__, "score": "cosine", "temperature": 0.1}), 20, 2
    ).eval()
    with torch.no_grad():
        s = model.scores(model(*_inputs([[0, 1, 2, 3]]))[:, -1], torch.tensor([3]))[:, 1:]
    assert float(s.abs().max()) <= 10.0 + 1e-4


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_separate_output_table_learns_the_pattern(successor, name):
    cfg = tiny_config(name)
    cfg = cfg.replace(model=ModelConfig(**{**cfg.model.__dict__, "separate_output": True}))
    rec = Recommender(cfg).fit(successor, progress=False)
    assert rec.evaluate("test")["hr@1"] == 1.0
    assert rec.model is not None and rec.model.out_emb is not None
    # the input table is not what the items are scored against
    table = rec.model.item_table()
    assert not torch.equal(rec.model.score_rows(table), table)


@pytest.mark.parametrize("features", [True, False])
def test_behaviour_head_gives_a_distribution_per_candidate(features):
    cfg = tiny_config("transformer").model
    cfg = ModelConfig(**{**cfg.__dict__, "behaviour_head": True, "behaviour_features": features})
    model = NextItemModel(cfg, 20, 2).eval()
    items, behaviours, stamps = _inputs([[0, 1, 2, 3]])
    with torch.no_grad():
        h = model(items, behaviours, stamps)[:, -1]
        p = model.behaviour_logits(
            h, torch.tensor([[4, 5, 6]]), window=(items, behaviours)
        ).softmax(-1)
        if features:  # the window is an input of this head
            with pytest.raises(ValueError, match="history window"):
                model.behaviour_logits(h, torch.tensor([[4, 5, 6]]))
        else:
            assert torch.equal(p, model.behaviour_logits(h, torch.tensor([[4, 5, 6]])).softmax(-1))
    assert p.shape == (1, 3, 2)
    np.testing.assert_allclose(p.sum(-1).numpy(), 1.0, rtol=1e-5)


def test_behaviour_head_without_the_item_vector_sees_items_only_through_the_history():
    cfg = tiny_config("gru").model
    cfg = ModelConfig(**{**cfg.__dict__, "behaviour_head": True, "behaviour_item": False})
    model = NextItemModel(cfg, 20, 2).eval()
    items, behaviours, stamps = _inputs([[0, 1, 2, 3]])
    with torch.no_grad():
        h = model(items, behaviours, stamps)[:, -1]
        p = model.behaviour_logits(h, torch.tensor([[3, 4, 5, 6]]), window=(items, behaviours))
    # 4, 5 and 6 are not in the history: the same features, the same distribution; 3 is
    torch.testing.assert_close(p[0, 1], p[0, 2])
    torch.testing.assert_close(p[0, 1], p[0, 3])
    assert not torch.allclose(p[0, 0], p[0, 1])


def test_history_features_by_hand():
    from chronorec.models.heads import history_features

    # one window: padding, then item 7 viewed, 8 bought, 7 carted (behaviours 1 view, 2 cart,
    # 3 buy)
    items = torch.tensor([[0, 7, 8, 7]])
    behaviours = torch.tensor([[0, 1, 3, 2]])
    # after the whole window, candidates 7, 8 and 9
    last = history_features(items, behaviours, torch.tensor([[[7, 8, 9]]]), 3)  # (1, 1, 3, 6)
    mix = [1 / 3, 1 / 3, 1 / 3]
    want = torch.tensor([[mix + [np.log(2), np.log(2), 0], mix + [0, 0, np.log(2)], mix + [0] * 3]])
    torch.testing.assert_close(last[0], want.float())
    # every step of the window, each with its own candidate (the next item): step t sees 0..t
    steps = history_features(items, behaviours, torch.tensor([[[7], [8], [7], [8]]]), 3)
    assert steps.shape == (1, 4, 1, 6)
    torch.testing.assert_close(steps[0, 0, 0], torch.zeros(6))  # padding: nothing seen yet
    torch.testing.assert_close(steps[0, 1, 0, :3], torch.tensor([1.0, 0, 0]))  # one view
    torch.testing.assert_close(steps[0, 1, 0, 3:], torch.zeros(3))  # item 8: not seen yet
    torch.testing.assert_close(steps[0, 2, 0, 3:], torch.tensor([np.log(2), 0, 0]).float())
    torch.testing.assert_close(steps[0, 3], last[0, :, 1:2].reshape(1, 6))  # = after the window


def test_evaluate_uses_full_ranking_on_a_fitted_model(successor):
    rec = Recommender(tiny_config("gru", max_epochs=1)).fit(successor, progress=False)
    assert rec.dataset is not None
    from chronorec.data.splits import leave_one_out

    split = leave_one_out(successor.events)
    result = evaluate(rec, successor, split.test, exclude_seen=False)
    assert result.n_queries == successor.n_users


def test_id_text_tower_scores_items_without_training_events_from_text_alone(successor, random_text):
    """An item with no training events has no learned id: its id row (pushed around only as a
    softmax negative) must not reach its vector; the text side alone does."""
    cfg = tiny_config("gru", "id+text", max_epochs=2)
    cfg = cfg.replace(data=DataConfig(cold_fraction=0.1, cold_seed=1))
    cold = cold_items(successor, cfg)
    rec = Recommender(cfg).fit(successor, text_vectors=random_text(20), progress=False)
    assert rec.model is not None
    tower = rec.model.tower
    assert tower.id_known[torch.from_numpy(cold)].sum() == 0
    assert tower.id_known[1:].sum() == successor.n_items - cold.size
    with torch.no_grad():
        before = rec.model.item_table().clone()
        tower.id_emb.weight[torch.from_numpy(cold)] += 5.0  # type: ignore[union-attr]
        after = rec.model.item_table()
    assert torch.equal(before[torch.from_numpy(cold)], after[torch.from_numpy(cold)])
    warm = next(i for i in range(1, successor.n_items + 1) if i not in set(cold.tolist()))
    assert torch.equal(before[warm], after[warm])  # untouched rows stay as they were
    # the service gives a new item the same row the table gives a cold catalogue item
    from chronorec.service.engine import tower_rows

    with torch.no_grad():
        served = tower_rows(rec.model, tower.text_vectors[torch.from_numpy(cold)])
    assert torch.allclose(after[torch.from_numpy(cold)], served, atol=1e-6)


def test_byte_dropout_drops_the_rounded_share_and_keeps_the_expected_value() -> None:
    from chronorec.models.dropout import Dropout

    drop = Dropout(0.2)
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = drop.train()(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 51 / 256) < 0.005  # p rounded to a multiple of 1/256
    assert abs(float(y.mean()) - 1.0) < 0.01  # kept elements are scaled up
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
