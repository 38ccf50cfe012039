"""Process-group setup for ``torchrun`` (NCCL on GPU, gloo on CPU) and small rank helpers."""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: the local CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"train.device = {device!r} is not a device ({exc}); use 'auto', 'cpu' or 'cuda'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use device='cpu' or 'auto'.")
    return dev


def setup(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        store = elastic_round_store(rank, world)
        if store is None:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


HANDSHAKE_TIMEOUT_S = 600.0  # how long the ranks of a (re)started group wait for each other


def elastic_round_store(rank: int, world: int, timeout_s: float = HANDSHAKE_TIMEOUT_S):
    """A store for this group's process-group keys, fresh for every start of the group under ``torchrun``.

    ``torchrun`` (c10d rendezvous) hands the workers of every round the same agent-hosted store
    (``TORCHELASTIC_USE_AGENT_STORE``), and ``init_process_group`` keys its connection data by rank only.
    When the agents restart a group (``--max-restarts``, a worker or node died), the new workers find the
    dead group's keys there and connect to dead peers: the restart hangs. Here the ranks first agree on a
    token that is new to this round and put their process-group keys under it:

    rank ``r > 0`` posts a fresh nonce under ``hello/r`` (again and again until answered); rank 0 answers a
    nonce with its own fresh token under ``ack/<nonce>`` and takes it as this round's rank ``r`` once the
    token comes back under ``got/<nonce>`` (a stale nonce, left by a dead worker, is never confirmed).

    Returns None when not under an elastic agent (plain ``env://`` is then fine).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    base = dist.TCPStore(addr, port, world_size=world, is_master=False, timeout=timedelta(seconds=timeout_s))
    hs = dist.PrefixStore("crossscale/handshake/", base)
    deadline = time.monotonic() + timeout_s

    def wait_for(key: str, within: float) -> bytes | None:
        end = min(time.monotonic() + within, deadline)
        while True:
            if hs.check([key]):
                return hs.get(key)
            if time.monotonic() >= end:
                return None
            time.sleep(0.02)

    def late(what: str) -> RuntimeError:
        return RuntimeError(f"rank {rank}: {what} within {timeout_s:.0f} s (store {addr}:{port}); check that every "
                            "node of the run started and can reach the others.")

    if rank == 0:
        token = uuid.uuid4().hex
        for r in range(1, world):
            while True:
                nonce = wait_for(f"hello/{r}", deadline - time.monotonic())
                if nonce is None:
                    raise late(f"rank {r} did not join")
                nonce = nonce.decode()
                hs.set(f"ack/{nonce}", token)
                if wait_for(f"got/{nonce}", 2.0) == token.encode():
                    break
                if time.monotonic() >= deadline:
                    raise late(f"rank {r} did not answer")
    else:
        nonce = uuid.uuid4().hex
        while True:
            hs.set(f"hello/{rank}", nonce)
            token = wait_for(f"ack/{nonce}", 0.5)
            if token is not None:
                hs.set(f"got/{nonce}", token)
                token = token.decode()
                break
            if time.monotonic() >= deadline:
                raise late("rank 0 did not answer")
    return dist.PrefixStore(f"crossscale/round/{token}/", base)


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (a list of one element when running alone)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is True on any rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(values: dict, info: DistInfo) -> dict[str, float]:
    """Average scalar logs over ranks (each rank's value is the mean over its equal share of the batch)."""
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return dict(zip(keys, t.tolist()))


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (``obj`` itself when running alone)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
