"""The released data order (a permutation of the whole set each epoch) is what the stream gives with one
reader and a shuffle buffer that holds the whole set (docs/FIDELITY.md, "As released": data order)."""
from pathlib import Path

from crossscale_kit.data import PairedRandomResizedCrop, PairedTiles
from tests.kit.data.fakes import synthetic_root


def test_a_set_sized_shuffle_buffer_gives_a_new_permutation_each_epoch(tmp_path: Path):
    root = synthetic_root(tmp_path, num_pairs=24, mr_size=16, shard_size=4)
    data = PairedTiles(root=str(root), batch_size=4, num_workers=0, shuffle_buffer=24,
                       crop=PairedRandomResizedCrop(size=12))
    it = iter(data.stream(seed=0))
    epochs = [[k for _ in range(6) for k in next(it)["key"]] for _ in range(3)]
    for keys in epochs:
        assert len(keys) == len(set(keys)) == 24  # every pair exactly once per epoch
    assert epochs[0] != epochs[1] != epochs[2]
