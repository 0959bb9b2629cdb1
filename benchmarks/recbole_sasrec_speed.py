#!/usr/bin/env python
"""RecBole 1.2.1's SASRec training throughput on ML-1M (SASRec variant), on this CPU: the other
side of the speed row in BENCHMARKS.md ("speed: ML-1M in the classic SASRec configuration").

RecBole cannot share chronorec's venv (it needs numpy < 2 and pandas < 3), so it runs in its own:

    python3 -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0 "numpy<2" "pandas<3" scipy scikit-learn \
        tqdm colorlog==4.7.2 colorama==0.4.4 pyyaml tabulate texttable psutil plotly tensorboard
    /tmp/recbole-venv/bin/pip install --no-deps recbole==1.2.1 thop
    OMP_NUM_THREADS=2 /tmp/recbole-venv/bin/python benchmarks/recbole_sasrec_speed.py --threads 2

It converts ../shared/datasets/ml-1m/ml-1m.txt to RecBole's atomic format (the line order within
a user as the timestamp; no filtering), builds RecBole's dataset, dataloader and SASRec (max
length 200, hidden 64, inner 256, 2 layers, 2 heads, dropout 0.2, full-softmax CE, batch 128) and
times only the body of RecBole's ``Trainer._train_epoch`` (batch fetch, zero_grad,
``calculate_loss``, backward, Adam step) for ``--batches`` batches after ``--warmup``. It prints
the numbers and appends them as one row to ``benchmarks/results/recbole_sasrec_speed.jsonl``
(unless ``--no-append``; ``_common`` needs only the standard library, so this works from
RecBole's venv); the row in BENCHMARKS.md is curated by hand next to chronorec's own.
"""

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record_results  # noqa: E402  (before main changes the working directory)

ML1M = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "ml-1m" / "ml-1m.txt"


def write_atomic(src: Path, work: Path) -> Path:
    """ml-1m.txt ("user item" per line, chronological within a user) -> RecBole .inter file."""
    out = work / "dataset" / "ml1m_sas" / "ml1m_sas.inter"
    out.parent.mkdir(parents=True, exist_ok=True)
    position: dict[str, int] = defaultdict(int)
    with src.open() as f, out.open("w") as g:
        g.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in f:
            parts = line.split()
            if parts:
                position[parts[0]] += 1
                g.write(f"{parts[0]}\t{parts[1]}\t{position[parts[0]]}\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100, help="timed batches")
    ap.add_argument("--warmup", type=int, default=5, help="untimed warm-up batches")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--data", type=Path, default=ML1M, help="ml-1m.txt")
    ap.add_argument("--work", type=Path, default=Path("/tmp/recbole-work"), help="RecBole's files")
    ap.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = ap.parse_args()
    write_atomic(args.data, args.work)
    BENCH_DIR = str(args.work)

    import torch

    torch.set_num_threads(args.threads)

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    os.chdir(BENCH_DIR)  # RecBole writes log/, log_tensorboard/, saved/ relative to cwd
    config_dict = {
        # data
        "data_path": os.path.join(BENCH_DIR, "dataset"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "rm_dup_inter": None,
        "val_interval": None,
        "normalize_all": False,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        # model (classic SASRec)
        "hidden_size": 64,
        "inner_size": 256,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_dropout_prob": 0.2,
        "attn_dropout_prob": 0.2,
        "hidden_act": "gelu",
        "loss_type": "CE",
        # training
        "train_neg_sample_args": None,
        "train_batch_size": args.batch_size,
        "learning_rate": 0.001,
        "learner": "adam",
        "epochs": 1,
        # evaluation: leave-one-out, temporal order, full ranking
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "group_by": "user",
            "order": "TO",
            "mode": "full",
        },
        # environment
        "use_gpu": False,
        "device": "cpu",
        "worker": 0,
        "show_progress": False,
        "checkpoint_dir": os.path.join(BENCH_DIR, "saved"),
        "seed": 2020,
        "reproducibility": True,
        "state": "INFO",
    }
    config = Config(model="SASRec", dataset="ml1m_sas", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(args.threads)  # re-assert after RecBole init

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_build = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    optimizer = trainer.optimizer

    n_train = len(train_data._dataset)  # training samples (prefix -> next item) per epoch
    batches_per_epoch = len(train_data)
    n_catalogue = model.item_embedding.weight.shape[0]  # rows scored by full-softmax CE
    n_params = sum(p.numel() for p in model.parameters())

    print(
        f"# torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"interop={torch.get_num_interop_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    print(f"# dataset+dataloader build: {t_build:.1f} s")
    print(
        f"# users={dataset.user_num - 1} items={dataset.item_num - 1} "
        f"augmented samples (train+valid+test)={dataset.inter_num} model_params={n_params}"
    )
    print(f"# valid samples={len(valid_data._dataset)} test samples={len(test_data._dataset)}")

    model.train()

    def batches_forever():
        while True:  # past one epoch, carry on into the next
            yield from train_data

    it = batches_forever()

    def step(interaction):
        # == RecBole Trainer._train_epoch body (single_spec, no amp, no grad clipping) ==
        interaction = interaction.to(trainer.device)
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss_val = loss.item()
        trainer._check_nan(loss)
        loss.backward()
        optimizer.step()
        return len(interaction), loss_val

    for _ in range(args.warmup):
        step(next(it))

    samples = 0
    t_data = 0.0
    t_start = time.perf_counter()
    for _ in range(args.batches):
        ta = time.perf_counter()
        inter = next(it)
        t_data += time.perf_counter() - ta
        n, last_loss = step(inter)
        samples += n
    elapsed = time.perf_counter() - t_start

    sps = samples / elapsed
    print(
        f"batches timed          : {args.batches} (after {args.warmup} warm-up), "
        f"batch_size={args.batch_size}"
    )
    print(
        f"elapsed                : {elapsed:.3f} s  (dataloader fetch {t_data:.3f} s, "
        f"{100 * t_data / elapsed:.1f}%)"
    )
    print(f"sec per batch          : {elapsed / args.batches:.4f}")
    print(f"sequences/s            : {sps:.1f}")
    print(f"target positions/s     : {sps:.1f}  (1 target per RecBole training sample)")
    print(f"train samples/epoch    : {n_train}  ({batches_per_epoch} batches)")
    print(f"sec per epoch (extrap.): {n_train / sps:.1f}")
    print(f"CE catalogue size      : {n_catalogue}  (item_num incl. padding id 0)")
    print(f"last loss              : {last_loss:.4f}")
    record_results(
        "recbole_sasrec_speed",
        [
            {
                "library": "RecBole 1.2.1",
                "model": "SASRec",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "batch_size": args.batch_size,
                "max_len": args.max_len,
                "batches_timed": args.batches,
                "warmup_batches": args.warmup,
                "elapsed_seconds": elapsed,
                "dataloader_seconds": t_data,
                "seconds_per_batch": elapsed / args.batches,
                "sequences_per_s": sps,
                "targets_per_s": sps,
                "train_samples_per_epoch": n_train,
                "batches_per_epoch": batches_per_epoch,
                "seconds_per_epoch_extrapolated": n_train / sps,
                "catalogue_rows": n_catalogue,
                "model_params": n_params,
                "dataset_build_seconds": t_build,
                "last_loss": last_loss,
            }
        ],
        append=not args.no_append,
        data=str(args.data),
    )


if __name__ == "__main__":
    sys.exit(main())
