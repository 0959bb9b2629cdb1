"""Data-parallel training over processes started by ``torchrun`` (``torch.distributed``).

``torchrun --nproc_per_node N -m chronorec.cli train DIR ...`` starts N processes. Each builds
the same model from the same seed, trains on every N-th batch of each epoch's shuffled order
and averages its gradients with the others' through ``DistributedDataParallel`` (gloo, on CPU),
so every process holds the same weights after every step: an epoch takes 1/N of the steps, each
on N batches (the effective batch is N × ``train.batch_size``). Every process validates (the
same weights give the same figures, so they stop together); only rank 0 writes the run and
prints. Outside torchrun nothing here does anything.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def start_from_env() -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); False outside one."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group(backend="gloo")
    return True


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes: (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_size()[0] == 0


def local_threads() -> int:
    """CPU threads for one process: the machine's cores shared by the processes on it."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (os.cpu_count() or 1) // max(local, 1))


def any_of(*flags: bool) -> list[bool]:
    """Each flag true on any process (one all-reduce); the flags themselves when alone."""
    if rank_and_size()[1] == 1:
        return list(flags)
    t = torch.tensor([float(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def sums(*values: float) -> list[float]:
    """Each value summed over the processes (one all-reduce); the values themselves when alone."""
    if rank_and_size()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def barrier() -> None:
    if rank_and_size()[1] > 1:
        dist.barrier()
