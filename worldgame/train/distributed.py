"""Data-parallel training: the same loop in N processes started by ``torchrun``.

``torchrun --nproc_per_node=N -m worldgame train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; :func:`setup` reads them and joins the process group (gloo on CPU,
nccl on GPUs, one GPU per process: ``cuda:LOCAL_RANK``). Without WORLD_SIZE (or with 1) it returns
:data:`SINGLE`, whose methods do nothing, so a normal run is exactly what it was.

How a step works under N processes:

* **Sampling is sharded by seed.** Every rank holds the same generator (seeded by ``seed``, saved
  in the resumable state by rank 0). Each step it draws N pairs of seeds from it; rank r seeds a
  fresh batch generator and torch's global RNG with pair r, so the ranks draw different batches
  (with replacement, like the single-process sampler) and different noise. The global batch is
  N x ``batch_size``. Because the step's randomness is a function of the shared generator alone,
  a resumed run continues exactly, whichever rank saved the state.
* **Gradients are averaged** with one all-reduce of all of them (plus the loss, for logging)
  before clipping, so every rank applies the same clipped update: the weights, the optimizer, the
  teacher's EMA and the distillation target stay identical on every rank.
* **Rank 0 alone** prints, validates and writes (weights, state, metadata, the latents cache); the
  others wait at a barrier. Every rank loads a resumed state itself.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta

import torch

from worldgame.errors import WorldgameError

# rank 0 validates while the others wait: allow a slow validation (a crashed rank ends the job anyway)
TIMEOUT = timedelta(hours=2)


class Single:
    """One process: every method is the identity or does nothing."""

    active, rank, world, main = False, 0, 1, True

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device

    def log(self, *args, **kwargs) -> None:
        builtins.print(*args, **kwargs)

    def barrier(self) -> None:
        pass

    def on_main(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on rank 0; the other ranks wait until it is done."""
        fn()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it may write a cache), then the others."""
        yield

    def seed(self, seed: int) -> None:
        pass

    def generator(self, gen: torch.Generator) -> torch.Generator:
        return gen

    def broadcast(self, module: torch.nn.Module) -> None:
        pass

    def average_gradients(self, module: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        return loss.detach()

    def agree(self, elapsed: float) -> float:
        return elapsed


SINGLE = Single()


class Distributed(Single):
    """One of ``world`` processes of a torch.distributed process group."""

    active = True

    def __init__(self, device: torch.device) -> None:
        import torch.distributed as dist

        super().__init__(device)
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0
        self.nccl = dist.get_backend() == "nccl"

    def log(self, *args, **kwargs) -> None:
        if self.main:
            builtins.print(*args, **kwargs)

    def barrier(self) -> None:
        if self.nccl:
            self.dist.barrier(device_ids=[self.device.index])
        else:
            self.dist.barrier()

    def on_main(self, fn: Callable[[], object]) -> None:
        if self.main:
            fn()
        self.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def seed(self, seed: int) -> None:
        """The same global RNG on every rank (models built next are initialised identically)."""
        torch.manual_seed(seed)

    def generator(self, gen: torch.Generator) -> torch.Generator:
        """This rank's generator for one step (and its global RNG seeded for the step), drawn from
        the shared ``gen``: different on every rank, reproducible from ``gen``'s state alone."""
        seeds = torch.randint(2**62, (self.world, 2), generator=gen)[self.rank].tolist()
        torch.manual_seed(seeds[1])  # what an objective draws without a generator (torch.randn_like)
        return torch.Generator().manual_seed(seeds[0])

    def broadcast(self, module: torch.nn.Module) -> None:
        """Rank 0's weights and buffers everywhere (they are equal already when seeded alike)."""
        for t in [*module.parameters(), *module.buffers()]:
            self.dist.broadcast(t.data, src=0)  # on self.device: gloo with CPU, nccl with cuda:LOCAL_RANK

    def average_gradients(self, module: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """Average every gradient (and the loss) over the ranks in one all-reduce; returns the mean
        loss (a device tensor). A parameter without a gradient on every rank keeps none (AdamW skips
        it, as it would in one process); one with a gradient on some ranks gets their sum over N.
        The host waits for the all-reduce only when this rank lacks some gradient (to learn whether
        another rank had it); when it has them all, the averaged ones are assigned on the device."""
        params = [p for p in module.parameters() if p.requires_grad]
        dev = self.device
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dev, torch.float32)
                 for p in params]
        flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
        # a plain host-to-GPU copy waits for the device; from pinned memory it is queued like a kernel
        flags = flags.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else flags
        flat = torch.cat([*parts, flags, loss.detach().reshape(1).to(dev, torch.float32)])
        self.dist.all_reduce(flat)
        flat /= self.world
        local_all = all(p.grad is not None for p in params)
        anywhere = [True] * len(params) if local_all else (flat[-1 - len(params):-1] > 0).tolist()
        offset = 0
        for p, has in zip(params, anywhere):
            n = p.numel()
            if has:
                grad = flat[offset:offset + n].view_as(p).to(p.device, p.dtype)
                if p.grad is None:
                    p.grad = grad.clone()
                else:
                    p.grad.copy_(grad)
            offset += n
        return flat[-1]

    def agree(self, elapsed: float) -> float:
        """The slowest rank's training time, so every rank stops at ``max_minutes`` together (a host
        sync: the loop calls it at logging steps only)."""
        t = torch.tensor([elapsed], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return t.item()


def world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as e:
        raise WorldgameError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes") from e


def setup(device: torch.device) -> Single:
    """:data:`SINGLE` for one process; else join (or reuse) the process group torchrun described.

    CPU: gloo. CUDA: nccl, this process on ``cuda:LOCAL_RANK`` (one GPU per process). The group
    lives until the process exits, so that a second ``loop.run`` in one process reuses it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # an earlier run, or a caller that made the group
        return Distributed(_rank_device(device))
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR") in ("slurm", "local"):
        _from_submitit()
    if world_size() <= 1:
        return Single(device)
    if not dist.is_available():
        raise WorldgameError("WORLD_SIZE > 1 but this torch was built without torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise WorldgameError(f"WORLD_SIZE={world_size()} but {', '.join(missing)} unset: start the processes "
                             "with `torchrun --nproc_per_node=N -m worldgame train ...`")
    device = _rank_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    atexit.register(_leave)
    return Distributed(device)


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _from_submitit() -> None:
    """A job of hydra's submitit launcher (``hydra/launcher=submitit_slurm``) with several SLURM
    tasks: export torchrun's variables from SLURM's, one process per task."""
    try:
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return
    if JobEnvironment().num_tasks > 1:
        # every task keeps the node's GPUs and takes cuda:LOCAL_RANK (see _rank_device)
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def _rank_device(device: torch.device) -> torch.device:
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise WorldgameError(f"device={device}: distributed training runs on cpu (gloo) or cuda (nccl)")
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if count > 1 and local >= count:
        raise WorldgameError(f"LOCAL_RANK={local} but this machine has {count} GPUs; "
                             "start at most one process per GPU (--nproc_per_node)")
    index = local if count > 1 else 0  # one visible GPU: a scheduler gave each process its own
    torch.cuda.set_device(index)
    return torch.device("cuda", index)
