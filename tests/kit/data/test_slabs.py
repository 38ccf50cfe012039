"""Reusable shared-memory slabs between the loader workers and the training process (crossscale_kit.data.slabs)."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from crossscale_kit.data import PairShardWriter
from crossscale_kit.data.loader import PairedTiles
from crossscale_kit.data.slabs import SlabLeases, SlabPool, busy_flags, unpack
from crossscale_kit.data.stream import _Filler
from crossscale_kit.data.transforms import PairedRandomResizedCrop
from tests.kit.data.fakes import good_pair, synthetic_root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("slabs"), num_pairs=24, mr_size=16, shard_size=4)


def _tiles(root, workers):
    return PairedTiles(str(root), batch_size=3, num_workers=workers, shuffle_buffer=8,
                       crop=PairedRandomResizedCrop(size=12, patch_jitter=(4, 3)))


def _tensors(batch):
    return {k: v.clone() for k, v in batch.items() if torch.is_tensor(v)}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_consumer_that_drops_its_batches_gets_reused_slabs_with_the_right_data(root):
    ref_stream = _tiles(root, 0).stream(seed=1)
    ref = iter(ref_stream)
    stream = _tiles(root, 1).stream(seed=1)  # one worker plays the same logical reader as the in-process one
    it = iter(stream)
    for _ in range(12):
        batch = next(it)
        assert _same(_tensors(batch), _tensors(next(ref)))
        del batch
    stream.close(), ref_stream.close()
    assert stream.slab_use[True] >= 10  # after the first few, every batch reuses a slab


def test_batches_a_caller_keeps_are_never_overwritten(root):
    """A caller holding every batch (views and numpy arrays too) exhausts the slabs: the worker then
    uses fresh segments, and every kept batch still holds its own data at the end."""
    ref_stream = _tiles(root, 0).stream(seed=2)
    ref = iter(ref_stream)
    want = [_tensors(next(ref)) for _ in range(10)]
    stream = _tiles(root, 1).stream(seed=2)
    it = iter(stream)
    kept = []
    for n in range(10):
        b = next(it)
        if n % 3 == 0:  # keep only a view / a numpy array of the tiles of some batches
            b = {**b, "mr": b["mr"][:, :2], "hr": b["hr"].numpy()}
        kept.append(b)
        gc.collect()
    stream.close(), ref_stream.close()
    assert stream.slab_use[False] >= 5
    for n, (b, w) in enumerate(zip(kept, want)):
        mr = b["mr"]
        hr = torch.from_numpy(b["hr"]) if n % 3 == 0 else b["hr"]
        assert torch.equal(mr, w["mr"][:, :mr.shape[1]]), n
        assert torch.equal(hr, w["hr"]), n
        assert torch.equal(b["box"], w["box"]), n


def test_pool_and_leases_in_one_process():
    busy = busy_flags(1, 2)
    pool, leases = SlabPool(busy, 0), SlabLeases(busy)
    spec = {"x": ((2, 3), torch.int16), "flag": ((2,), torch.bool), "y": ((5,), torch.int32)}
    r0, flat0, fields, new0 = pool.take(spec)
    r1, _, _, _ = pool.take(spec)
    r2, _, _, new2 = pool.take(spec)
    assert (r0, r1, r2) == (0, 1, -1) and pool.fresh == 1 and new0 and new2  # both slabs busy: a fresh buffer
    assert all(off % 64 == 0 for _, off, _, _ in fields)
    unpack(flat0, fields)["x"][...] = torch.arange(6, dtype=torch.int16).view(2, 3)
    out = leases.hand_out(flat0, fields, 0, r0, flat0.numel())
    assert {k: (tuple(v.shape), v.dtype) for k, v in out.items()} == {k: v for k, v in spec.items()}
    assert torch.equal(out["x"], torch.arange(6, dtype=torch.int16).view(2, 3))
    view = out["x"][1]  # a view keeps its field, and so the slab, leased
    del out
    gc.collect()
    assert busy.tolist() == [[1, 1]]
    del view
    gc.collect()
    assert busy.tolist() == [[0, 1]]  # every field dropped: the slab is free, the other is still out
    r3, flat3, _, new3 = pool.take(spec)
    assert r3 == 0 and not new3 and flat3.data_ptr() == flat0.data_ptr()  # the same memory, named by its slot
    unpack(flat3, fields)["x"][...] = 7
    again = leases.hand_out(None, fields, 0, r3, flat3.numel())  # read through the mapping kept from the first
    assert bool((again["x"] == 7).all())
    with pytest.raises(RuntimeError, match="before sending it"):
        leases.hand_out(None, fields, 0, 1, flat3.numel())
    busy[0, 1] = 0
    r4, flat4, _, new4 = pool.take({"x": ((400, 3), torch.int16)})  # a freed slab too small for the batch grows
    assert r4 == 1 and new4 and flat4.numel() >= 2400
    assert busy_flags(0, 4) is None and SlabPool(None, 0).take(spec)[0] == -1


def _mixed_root(tmp_path):
    """Shards whose batches of 3 mix tile sizes and dtypes in places (uint8 tiles travel as int16)."""
    rng = np.random.default_rng(3)
    with PairShardWriter(tmp_path, shard_size=4) as w:
        for i in range(16):
            h = 12 if i % 5 == 3 else 8
            mr, hr = good_pair(rng, h=h)
            if i % 7 == 5:
                mr, hr = (mr % 200).astype(np.uint8), (hr % 200).astype(np.uint8)
            w.write(f"p{i:02d}", mr, hr)
    return tmp_path


def test_batches_of_mixed_tiles_in_workers_equal_the_in_process_ones(tmp_path):
    """A batch whose tiles change shape or dtype part-way falls back to keeping its pairs (those copied so
    far read back, the slab given back): with a worker the batches equal the in-process ones."""
    root = _mixed_root(tmp_path)

    def tiles(workers):
        return PairedTiles(str(root), batch_size=3, num_workers=workers, shuffle_buffer=4, resampled=True,
                           crop=PairedRandomResizedCrop(size=8))

    ref_stream, stream = tiles(0).stream(seed=4), tiles(1).stream(seed=4)
    ref, it = iter(ref_stream), iter(stream)
    shapes = set()
    for _ in range(15):
        batch, want = _tensors(next(it)), _tensors(next(ref))
        shapes.add(tuple(batch["mr"].shape))
        assert _same(batch, want)
    stream.close(), ref_stream.close()
    assert {(3, 4, 8, 8), (3, 4, 12, 12)} <= shapes  # both uniform and mixed (zero-padded) batches came


def test_filler_reads_back_the_pairs_copied_before_a_mismatch(tmp_path):
    ds = PairedTiles(str(_mixed_root(tmp_path)), batch_size=3, crop=PairedRandomResizedCrop(size=8)).stream(
        seed=0)._dataset
    rng = np.random.default_rng(0)
    params = lambda: ds.crop.draw(8, 8, 2, rng)  # noqa: E731
    u8 = tuple(a.astype(np.uint8) for a in good_pair(rng, h=8))
    pairs = [(*u8, params()), (*good_pair(rng, h=8), params()), (*good_pair(rng, h=12), params())]
    busy = busy_flags(1, 2)
    pool = SlabPool(busy, 0)
    filler = _Filler(ds, pool)
    for p in pairs:
        filler.add(p)
    tensors, meta = filler.finish()
    assert meta["slab"] == 1 and "_flat" in tensors  # slab 0 was given back at the mismatch (uint8, then int16)
    got = unpack(tensors["_flat"], meta["fields"])
    want, _ = ds._collate(pairs, None)
    assert _same(got, want) and got["mr"].dtype == torch.int16 and got["mr"].shape == (3, 4, 12, 12)
    slot, _, _, new = pool.take({"x": ((4,), torch.int16)})
    assert (slot, new) == (0, True)  # the training process never saw slab 0: it is sent when next used
