"""Export a tiny random-init ViTEncoder (patch 8, 32 px, D 64, depth 2) the way tools/train.py does.

Seeded and deterministic. ``python tests/data/make_encoder.py OUT [--seed 0] [--recipe gin/ijepa_sa.gin]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from crossscale_kit.io import BANDS  # noqa: E402

S2_MEAN = [443.89, 715.68, 813.27, 2603.59]
S2_STD = [283.97, 389.34, 651.25, 811.83]


def make(root, seed: int = 0, recipe: str = "gin/ijepa_sa.gin") -> Path:
    """Write ``encoder.safetensors`` + ``meta.json`` into ``root``; return it."""
    import torch

    from crossscale_kit.encoders.export import export_encoder
    from crossscale_kit.encoders.vit import ViTEncoder

    torch.manual_seed(seed)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=64, depth=2, num_heads=2)
    return export_encoder(enc, root, bands=list(BANDS), normalization={"mean": S2_MEAN, "std": S2_STD}, gsd=10.0,
                          recipe=[recipe], step=0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe", default="gin/ijepa_sa.gin")
    a = ap.parse_args()
    print(make(a.out, a.seed, a.recipe))
