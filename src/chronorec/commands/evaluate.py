"""``chronorec evaluate``: full-ranking metrics of a trained run on its validation or test split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chronorec.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="full-ranking HR/NDCG/MRR/Recall@K of a trained run",
        description="Rank every target against the whole catalogue on the run's own split. "
        "History items are excluded or not as the run's config says (data.exclude_seen); "
        "the output names which.",
    )
    p.add_argument(
        "run",
        type=Path,
        nargs="+",
        help="run directory written by `chronorec train`; several runs (same catalogue and "
        "split) are evaluated as one ensemble: the mean of their per-history z-scored scores",
    )
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--data", type=Path, help="prepared dataset (default: the one trained on)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--exclude-seen",
        "--exclude-history",
        dest="exclude",
        action="store_true",
        default=None,
        help="drop items already in the history from the ranking",
    )
    group.add_argument(
        "--include-seen",
        "--keep-history",
        dest="exclude",
        action="store_false",
        help="rank history items too (repeat purchases)",
    )
    p.add_argument(
        "--blend",
        metavar="NAMES",
        help="comma-separated baselines to blend with the run(s): popular, popular-recent "
        "(last 30 days), repeat, repeat-recent (recency-weighted), transitions, user-knn, "
        "ridge (recent items -> next item), text-knn; their weights are tuned on the valid "
        "split unless --weights gives them; 'none': the model alone, as --weights none",
    )
    p.add_argument(
        "--weights",
        metavar="NAME=W,...",
        help="fixed blend weights (the runs' mean has weight 1), e.g. transitions=0.3,repeat=1",
    )
    p.add_argument(
        "--learned",
        action="store_true",
        help="with --blend NAMES: instead of one weight per baseline, train a learned blend on "
        "the valid split — a LightGBM re-ranker over each history's candidates, with every "
        "term's score and rank, the history's counts and recency and the item's repurchase "
        "statistics as features (chronorec.blend.learned); prints its out-of-fold validation "
        "figure next to the runs alone",
    )
    p.add_argument(
        "--learned-windows",
        type=int,
        default=None,
        metavar="N",
        help="with --learned: train on the validation window and N - 1 earlier ones (each "
        "user's earlier events under leave-one-out, earlier windows of the temporal split), "
        "with the runs' features missing where the runs were trained on the targets "
        "(default: 6, chronorec.blend.WINDOWS)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for scoring and the learned blend's LightGBM (default: every core; "
        "give fewer when other jobs share the machine: LightGBM slows many times over when a "
        "thread waits on a busy core)",
    )
    p.add_argument(
        "--save-blend",
        action="store_true",
        help="store the blend with the run (RUN/blend.json, one run only): `chronorec serve` "
        "and `chronorec recommend` then use it when not told otherwise",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec.blend import BLEND_FILE, save_blend

    _check(args)
    scorer, tuned, report = _scorer(args)
    learned = scorer.learned
    blend = {} if learned is not None else dict(scorer.weights)
    model = (
        scorer.members[0].config.model.name if len(args.run) == 1
        else f"ensemble of {len(args.run)}"
    )  # fmt: skip
    item_repr = "+".join(sorted({r.config.model.item_repr for r in scorer.members}))
    if args.save_blend:
        saved = save_blend(args.run[0], blend, tuned_on=tuned or "given", learned=learned)
        print(f"saved the blend as {saved}", file=sys.stderr)
    result = scorer.evaluate(args.split, exclude_seen=args.exclude)
    auc = _behaviour_auc(scorer, args.split)
    if args.json:
        out = result.to_dict()
        out.update(split=args.split, model=model, item_repr=item_repr)
        if auc:
            out["behaviour_auc"] = auc
        if len(args.run) > 1:
            out["runs"] = [str(r) for r in args.run]
        if blend:
            out["blend"] = blend
            out["weights_tuned_on"] = tuned or None
        if learned is not None:
            out["learned_blend"] = {**learned.describe(), "tuned_on": tuned or None, **report}
        print(json.dumps(out))
        return 0
    m = result.metrics
    if learned is not None:
        model += " + " + ", ".join(learned.baselines) + " (learned blend"
        model += ": trained on valid, optimistic there)" if args.split == "valid" else ")"
        for key, value in report.items():
            if isinstance(value, dict):  # features by gain
                shown = ", ".join(f"{k} {v:.3f}" for k, v in value.items())
            else:
                shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"learned blend: {key} {shown}")
        metric = scorer.config.train.select_metric
        oof = report.get(f"valid {metric}, learned blend ({report.get('objective')}) out of fold")
        lin = report.get(f"valid {metric}, linear blend (tuned on it)")
        if oof is not None and lin is not None and oof < lin:
            print(
                "learned blend: out of fold it ranks below the linear blend on valid (which is "
                "even optimistic there): the linear blend (--blend without --learned) is the "
                "safer choice for this run"
            )
    if blend:
        model += " + " + ", ".join(f"{w:g} {name}" for name, w in blend.items())
        if tuned:
            model += f" (weights tuned on {tuned}"
            model += ": optimistic here)" if args.split == tuned else ")"
    print(
        f"{model} ({item_repr}) on {args.split}: "
        f"{result.n_queries:,} queries, {result.n_targets:,} targets, full ranking, "
        f"history {'excluded' if result.exclude_seen else 'kept'}, "
        f"{result.seconds:.2f}s"
    )
    ks = sorted({int(k.split("@")[1]) for k in m if "@" in k})
    names = [n for n in ("hr", "ndcg", "mrr", "recall") if any(k.startswith(n + "@") for k in m)]
    print("K".rjust(4) + "".join(n.upper().rjust(10) for n in names))
    for k in ks:
        print(f"{k:>4}" + "".join(f"{m.get(f'{n}@{k}', float('nan')):>10.4f}" for n in names))
    for name, sm in result.slices.items():
        print(
            f"  {name:<16} n={sm.get('n_targets', 0):>7,.0f}  NDCG@10 {sm.get('ndcg@10', 0):.4f}"
            f"  HR@10 {sm.get('hr@10', 0):.4f}"
        )
    for name, value in auc.items():
        print(f"behaviour head: AUC of P({name} | history, item) on the targets {value:.4f}")
    if learned is not None:
        print(
            "the learned blend serves only from the run's blend.json (--save-blend)"
            if not args.save_blend
            else f"`chronorec recommend` and `chronorec serve` rank with it ({BLEND_FILE})"
        )
    if blend:
        weights_arg = ",".join(f"{name}={w:g}" for name, w in blend.items())
        print(
            f"the same blend in `chronorec recommend`: --weights {weights_arg}; "
            f"in `chronorec serve`: --blend {weights_arg}"
            + (f" (or nothing: {args.run[0]}/{BLEND_FILE} holds it)" if args.save_blend else "")
        )
    return 0


def _check(args: argparse.Namespace) -> None:
    names, _ = _names(args)
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, not {args.threads}")
        torch.set_num_threads(args.threads)
    if args.weights is not None:
        from chronorec.blend import resolve_blend

        resolve_blend(args.weights, None, "--weights")  # a bad --weights fails first
    if args.save_blend and (len(args.run) != 1 or not (names or args.weights)):
        raise ConfigError("--save-blend stores the blend of one run: give one RUN and --blend")
    if args.learned and (not names or args.weights is not None):
        raise ConfigError("--learned trains on the baselines --blend names (no --weights)")
    if args.learned_windows is not None and not args.learned:
        raise ConfigError("--learned-windows goes with --learned")
    if args.learned_windows is not None and args.learned_windows < 1:
        raise ConfigError(f"--learned-windows must be at least 1, not {args.learned_windows}")


def _names(args: argparse.Namespace) -> tuple[list[str], bool]:
    from chronorec.blend import blend_names

    return blend_names(args.blend)  # (names, whether it said "none")


def _scorer(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any]]:
    """The runs with the blend the options ask for: ``--weights`` as given, ``--blend NAMES``
    tuned (or learned) on the valid split, ``--blend none`` the model alone, nothing the run's
    saved blend (:func:`chronorec.blend.load`, as serve ranks). Returns it with the split its
    blend was tuned on ("" for none or given weights) and the learned blend's report."""
    from chronorec import blend

    names, off = _names(args)
    option = args.weights if args.weights is not None else ("none" if names or off else None)
    scorer = blend.load(args.run, dataset=args.data, blend=option, where="--weights")
    choice, tuned, report = scorer.choice, "", dict[str, Any]()
    if choice.source == "saved":
        tuned = "valid" if choice.tuned_on == "valid" else ""
        print(f"ranked by {choice.describe()}; --blend none for the model alone", file=sys.stderr)
    if args.learned:
        windows = args.learned_windows or blend.WINDOWS  # checked >= 1 above
        _, report = blend.fit_learned(  # it ranks with the learned blend from now on
            scorer, names, which="valid", threads=args.threads, windows=windows
        )
        tuned = "valid"
    elif names:
        scorer.tune(names, which="valid")
        tuned = "valid"
    return scorer, tuned, report


def _behaviour_auc(scorer: Any, split: str) -> dict[str, float]:
    """For one run with a behaviour head: the AUC of P(b | history, item) telling the split's
    targets of each behaviour b from the others, where the split has both kinds."""
    from chronorec.blend import Ensemble
    from chronorec.recommender import Recommender

    if isinstance(scorer, Ensemble) and len(scorer.members) == 1:  # a blend: the run's head
        scorer = scorer.members[0]
    if not isinstance(scorer, Recommender) or scorer.model is None:
        return {}
    if scorer.model.behaviour_head is None:
        return {}
    names = scorer.meta.get("behaviours") or []
    aucs = scorer.behaviour_aucs(split, range(1, len(names) + 1))
    # NaN where every target has (or none has) the behaviour
    return {name: round(aucs[b], 4) for b, name in enumerate(names, start=1) if aucs[b] == aucs[b]}
