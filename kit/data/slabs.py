"""Reusable shared-memory batch buffers between the loader workers and the training process.

A DataLoader worker normally puts every batch in a fresh shared-memory segment: the segment is created,
its pages are faulted in by the worker's writes, and the training process maps it again and faults the
pages in once more when it reads them. At the paper's tile sizes a batch is tens of MB, and on this
project's CPU machine a fresh 16 MB segment costs ~13 ms to create and fill against ~1 ms for memory
that is already mapped: most of a worker's time (``benchmarks/data_pipeline.py``).

Here each worker keeps ``slots`` *slabs*: shared uint8 buffers, allocated on first use and reused while
a batch fits, into which all fields of a batch are packed (:func:`layout`, :func:`unpack`). A small shared
``busy`` array, made by the training process before the workers start, says which slabs are in use:

* the worker takes a slab whose flag is 0, sets it to 1, fills it and sends the batch: the buffer itself
  the first time (torch passes its file descriptor), afterwards only the slot number, which the training
  process reads through the mapping :class:`SlabLeases` kept (no descriptor passing, no page faults);
* the training process attaches a finaliser to every tensor of the batch it hands out; when the caller
  has dropped them all (the train loop does so as soon as ``to_device`` has made the model inputs), the
  flag goes back to 0;
* a worker that finds no free slab (a caller holding many batches) falls back to a fresh segment, so a
  batch is never overwritten while anyone can still see it.

A caller that keeps a batch's storage beyond its tensors (``t.untyped_storage()``, a raw pointer) must
copy it; tensors, their views and their ``.numpy()`` arrays keep the slab busy.
"""
from __future__ import annotations

import math
import weakref

import torch


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in a fresh shared-memory segment (handed to another process without a copy)."""
    try:
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape), device="cpu")
        return torch.empty(0, dtype=dtype).new(storage).view(shape)
    except Exception:  # noqa: BLE001 - private API moved: the public call copies once
        return torch.empty(shape, dtype=dtype).share_memory_()


def busy_flags(workers: int, slots: int) -> torch.Tensor | None:
    """The shared ``(workers, slots)`` uint8 flags (made in the training process before workers start)."""
    if workers < 1 or slots < 1:
        return None
    return torch.zeros(workers, slots, dtype=torch.uint8).share_memory_()


ALIGN = 64  # byte alignment of each field in a slab


def layout(specs: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> tuple[list[tuple], int]:
    """``([(name, byte offset, shape, dtype), ...], total bytes)`` of the fields packed in one buffer."""
    out, off = [], 0
    for name, (shape, dtype) in specs.items():
        out.append((name, off, tuple(int(n) for n in shape), dtype))
        nbytes = math.prod(shape) * dtype.itemsize
        off += -(-nbytes // ALIGN) * ALIGN
    return out, max(off, ALIGN)


def unpack(flat: torch.Tensor, fields: list[tuple]) -> dict[str, torch.Tensor]:
    """The fields of a packed uint8 buffer as tensors of their own (each a root over the shared storage,
    so a view a caller takes of one keeps that field, and with it the lease, alive)."""
    storage = flat.untyped_storage()
    base = flat.storage_offset()
    out = {}
    for name, off, shape, dtype in fields:
        out[name] = torch.empty(0, dtype=dtype).set_(storage, (base + off) // dtype.itemsize, shape)  # contiguous
    return out


class SlabPool:
    """Worker side: ``slots`` reusable packed buffers of one logical worker (see the module docstring)."""

    def __init__(self, busy: torch.Tensor | None, worker: int) -> None:
        self.flags = busy[worker].numpy() if busy is not None else None
        self.slabs: dict[int, torch.Tensor] = {}
        self._next = 0
        self.fresh = 0  # batches that found no free slab

    def take(self, specs: dict[str, tuple[tuple[int, ...], torch.dtype]]
             ) -> tuple[int, torch.Tensor, list[tuple], bool]:
        """``(slot, flat, fields, new)``: a shared uint8 buffer holding ``specs`` packed as ``fields`` (see
        :func:`layout`); slot -1: a fresh segment (no free slab). ``new``: the training process has not seen
        this buffer yet, so the batch must carry it; otherwise the slot number is enough."""
        fields, total = layout(specs)
        if self.flags is not None:
            n = len(self.flags)
            for k in range(n):
                r = (self._next + k) % n
                if self.flags[r] == 0:
                    self.flags[r] = 1
                    self._next = r + 1
                    new = r not in self.slabs or self.slabs[r].numel() < total
                    if new:
                        self.slabs[r] = shared_empty((total,), torch.uint8)
                    return r, self.slabs[r][:total], fields, new
        self.fresh += 1
        return -1, shared_empty((total,), torch.uint8), fields, True

    def release(self, slot: int, new: bool) -> None:
        """Give back a slab taken for a batch that is not sent after all (``new``: as :meth:`take` said)."""
        if slot < 0 or self.flags is None:
            return
        if new:  # the training process never saw this buffer: forget it, so that it is sent when next used
            del self.slabs[slot]
        self.flags[slot] = 0


class SlabLeases:
    """Training-process side: unpacks a batch and frees its slab when every field has been dropped.

    The first batch of a slab carries the buffer (torch passes its file descriptor and this process maps
    it); later batches of the same slab carry only the slot number and are read from the mapping kept here.
    A worker's batches arrive in the order it made them, so a slab is always mapped before it is named.
    """

    def __init__(self, busy: torch.Tensor | None) -> None:
        self.flags = busy.numpy() if busy is not None else None
        self._mapped: dict[tuple[int, int], torch.UntypedStorage] = {}

    def hand_out(self, flat: torch.Tensor | None, fields: list[tuple], worker: int, slot: int,
                 nbytes: int) -> dict[str, torch.Tensor]:
        """The fields of the batch (in ``flat``, or in ``worker``'s ``slot`` mapped before), leased: the
        slab's flag clears when all of them are gone."""
        if flat is None:
            storage = self._mapped.get((worker, slot))
            if storage is None:
                raise RuntimeError(f"worker {worker} named slab {slot} before sending it; this is a bug in crossscale_kit.data.")
            flat = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (nbytes,))
        elif slot >= 0:
            self._mapped[(worker, slot)] = flat.untyped_storage()  # kept mapped: later batches name the slot
        out = unpack(flat, fields)
        if self.flags is None or slot < 0:
            return out
        left = [len(out)]
        flags = self.flags

        def release() -> None:
            left[0] -= 1
            if left[0] == 0:
                flags[worker, slot] = 0

        for t in out.values():
            weakref.finalize(t, release)
        return out
