#!/usr/bin/env python
"""Cluster maps of patch features of one MR image from several exported encoders (the paper's Fig. 3).

Example::

    python tools/cluster_map.py --image s2_scene.tif --encoder runs/ijepa_mr/export runs/ijepa_hr/export \
        runs/ijepa_sa/export --k 3 --out figures/cluster_map.png

``--image`` is a GeoTIFF (bands by description or ``--image-bands blue=2,green=3,red=4,nir=8``), a ``.npy``
``(C, H, W)`` or a pair shard ``.tar`` (``--key`` or ``--index``). Each encoder's features are clustered
with Ward's hierarchical clustering into ``k`` clusters; the PNG shows the RGB image and one cluster map
per encoder, with a PCA-to-RGB map per encoder below. Also writes ``<out stem>.json`` (clusters present
per encoder) and ``<out stem>.npz`` (the label maps).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from crossscale_kit.cli import main_guard, parser  # noqa: E402


def run(argv=None) -> dict:
    """Parse ``argv`` and do the work; user errors raise ``ValueError`` / ``OSError`` (``main`` exits 2 on them)."""
    p = parser(__doc__)
    p.add_argument("--image", required=True)
    p.add_argument("--encoder", "--encoders", dest="encoder", nargs="+", required=True, help="export folders")
    p.add_argument("--names", nargs="*", default=None, help="titles, one per encoder (default: recipe or folder)")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--img-size", type=int, default=None, help="resize to this side (default: native, cropped to patches)")
    p.add_argument("--image-bands", default=None, help="GeoTIFF band mapping, e.g. blue=2,green=3,red=4,nir=8")
    p.add_argument("--key", default=None, help="sample key in a shard")
    p.add_argument("--index", type=int, default=0, help="sample index in a shard")
    p.add_argument("--out", default="cluster_map.png")
    args = p.parse_args(argv)
    import numpy as np

    from crossscale_kit.io import BANDS
    from crossscale_kit.encoders.export import load_exported_encoder
    from crossscale_kit.eval import cluster
    from crossscale_kit.eval.rows import write_json
    from crossscale_kit.eval.tables import row_key

    if args.img_size is not None and args.img_size < 1:
        raise ValueError(f"--img-size {args.img_size}: must be a positive side in px (or leave it out for the "
                         "native size).")
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; pass a .png file name (the .json and .npz go beside it).")
    if args.names and len(args.names) != len(args.encoder):
        raise ValueError(f"--names has {len(args.names)} entries for {len(args.encoder)} encoders.")
    img = cluster.load_image(args.image, key=args.key, index=args.index, bands=BANDS, band_spec=args.image_bands)
    maps, info, arrays = [], {}, {}
    for i, enc in enumerate(args.encoder):
        model, meta = load_exported_encoder(enc)
        if list(meta.get("bands") or BANDS) != list(BANDS):
            raise ValueError(f"{enc} expects bands {meta.get('bands')}; this tool feeds {list(BANDS)}.")
        name = args.names[i] if args.names else row_key({"recipe": meta.get("recipe"), "encoder": enc})
        note = cluster.range_note(img, meta, BANDS)
        if note:
            warnings.warn(f"{args.image} for {name}: {note}", UserWarning, stacklevel=1)
        feats = cluster.encoder_features(model, meta, img, args.img_size)
        bright = cluster.patch_brightness(img, feats.shape[:2])
        labels = cluster.ward_clusters(feats, args.k, bright)
        maps.append((name, labels, cluster.pca_rgb(feats)))
        info[name] = {"encoder": enc, "grid": list(labels.shape), "clusters_present": int(len(np.unique(labels))),
                      "cluster_sizes": np.bincount(labels.ravel(), minlength=args.k).tolist(), "range_warning": note}
        arrays[f"clusters_{i}"] = labels
    out = Path(args.out)
    cluster.render(out, cluster.rgb_image(img), maps, args.k)
    write_json(out.with_suffix(".json"), {"image": str(args.image), "k": args.k, "encoders": info})
    np.savez(out.with_suffix(".npz"), **arrays)
    print(f"wrote {out}")
    return info


@main_guard
def main(argv: list[str]) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
