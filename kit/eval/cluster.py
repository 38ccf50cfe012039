"""Unsupervised cluster maps of patch features (the paper's Fig. 3) and PCA-to-RGB maps.

Patch features ``(gh, gw, D)`` of one MR image -> Ward agglomerative clustering
(``scipy.cluster.hierarchy.linkage(method="ward")``, cut into ``k`` clusters with ``fcluster``) -> a
``(gh, gw)`` label map. Cluster ids are renumbered by the mean brightness of the image under them, so
colours mean roughly the same thing across encoders. Ward needs ``O(N^2)`` memory for ``N = gh*gw``
patches (64 x 64 patches: about 70 MB).
"""
from __future__ import annotations

import os
import tarfile
import warnings
from pathlib import Path

import numpy as np

from crossscale_kit.io import BANDS


def load_image(path: str | os.PathLike, *, key: str | None = None, index: int = 0, bands=BANDS,
               band_spec: str | None = None) -> np.ndarray:
    """One MR image ``(C, H, W)`` float32 in raw units (e.g. reflectance x 10000), kit band order.

    Args:
        path: a GeoTIFF (bands mapped by description or ``band_spec``, see ``make_shards.py geotiff``),
            a ``.npy`` ``(C, H, W)`` array, or a pair shard ``.tar`` (its ``<key>.mr.npy``).
        key: sample key inside a shard (default: the ``index``-th sample).
        bands: kit band names.
        band_spec: GeoTIFF band mapping like ``blue=2,green=3,red=4,nir=8``.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"image {p} is a folder; pass one image file: a GeoTIFF, a .npy (C, H, W) or a pair "
                                "shard .tar.")
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist; pass a GeoTIFF, a .npy (C, H, W) or a pair shard .tar.")
    suffix = p.suffix.lower()
    if suffix in (".tif", ".tiff"):
        from crossscale_kit.data.sources.geotiff import band_indexes, open_raster

        with open_raster(p) as ds:
            img = ds.read(band_indexes(ds, tuple(bands), band_spec, "--image-bands")).astype(np.float32)
    elif suffix == ".npy":
        try:
            img = np.load(p, allow_pickle=False).astype(np.float32)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{p} is not a readable .npy array ({e}); save it with numpy.save.") from None
    elif suffix == ".tar":
        try:
            with tarfile.open(p) as tf:
                names = [m.name for m in tf.getmembers() if m.name.endswith(".mr.npy")]
                if not names:
                    raise ValueError(f"{p} holds no <key>.mr.npy member; is it a pair shard?")
                if key is None:
                    if not 0 <= index < len(names):
                        raise ValueError(f"--index {index} is outside the {len(names)} samples of {p}.")
                    name = names[index]
                else:
                    name = f"{key}.mr.npy"
                    if name not in names:
                        raise ValueError(f"{p} has no sample {key!r}; keys are e.g. {[n[:-7] for n in names[:3]]}.")
                import io

                img = np.load(io.BytesIO(tf.extractfile(name).read())).astype(np.float32)
        except tarfile.TarError as e:
            raise ValueError(f"{p} is not a readable tar shard ({e}).") from e
        img = _in_band_order(img, p, list(bands))
    else:
        raise ValueError(f"unsupported image type {suffix!r} of {p}; use .tif, .npy or a pair shard .tar.")
    if img.ndim != 3 or img.shape[0] != len(bands):
        raise ValueError(f"{p}: expected ({len(bands)}, H, W) for bands {list(bands)}, got {img.shape}.")
    return img


def _in_band_order(img: np.ndarray, shard: Path, bands: list[str]) -> np.ndarray:
    """A shard's tile reordered by name from the order its set's ``index.json`` records into ``bands``.

    Raises:
        ValueError naming both orders when the set does not hold every band of ``bands``, or the index is
        unreadable.
    """
    import json

    index = shard.parent / "index.json"
    if not index.is_file():
        return img  # a loose shard: the kit's order, as written by make_shards without --bands
    try:
        stored = [str(b).lower() for b in json.loads(index.read_text()).get("bands") or bands]
    except (ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"{index} is unreadable ({e}); re-write the shard set with tools/make_shards.py.") from None
    if stored == bands:
        return img
    if sorted(stored) != sorted(bands) or len(stored) != img.shape[0]:
        raise ValueError(f"{shard}: its set stores the bands {stored} ({index}) but the encoder takes {bands}; "
                         "pass an image with those bands.")
    return img[[stored.index(b) for b in bands]]


def normalise(img: np.ndarray, meta: dict) -> np.ndarray:
    """``(x - mean) / std`` with the encoder's ``meta["normalization"]``, else per-band image statistics."""
    norm = meta.get("normalization") or {}
    if "mean" in norm and "std" in norm and len(norm["mean"]) == img.shape[0]:
        mean = np.asarray(norm["mean"], np.float32)[:, None, None]
        std = np.asarray(norm["std"], np.float32)[:, None, None]
    else:
        mean = img.mean((1, 2), keepdims=True)
        std = img.std((1, 2), keepdims=True) + 1e-6
    return np.nan_to_num((img - mean) / std)


def range_note(img: np.ndarray, meta: dict, bands=BANDS) -> str | None:
    """A warning when the raw image's values do not fit the encoder's normalisation (``meta["normalization"]``).

    An 8-bit or 0-1 image fed to an encoder normalised for reflectance x 10000 becomes a near-constant input
    after normalisation; its patch features are then dominated by the position table and the cluster maps
    follow position, not content. None when the range fits (or the export records no normalisation).
    """
    from crossscale_kit.io import units_warning

    norm = meta.get("normalization") or {}
    if not norm.get("mean") or not norm.get("std"):
        return None
    valid = np.isfinite(img)
    stats = {b: {"mean": float(img[i][valid[i]].mean()), "std": float(img[i][valid[i]].std()),
                 "min": float(img[i][valid[i]].min()), "max": float(img[i][valid[i]].max())}
             for i, b in enumerate(bands) if valid[i].any()}
    note = units_warning(stats, norm["mean"], norm["std"], bands)
    if note is None:
        return None
    return ("the image's range does not fit the encoder's normalisation (" + note.split(": ", 1)[1].split(". Rescale")[0]
            + "); the features then follow patch position, not content, and so do the cluster maps. "
            "Give the image in the units the encoder was trained on (reflectance x 10000 for the kit's recipes).")


def encoder_features(model, meta: dict, img: np.ndarray, img_size: int | None = None) -> np.ndarray:
    """``(gh, gw, D)`` patch features of one raw image (normalised for that encoder, cropped to whole patches)."""
    import torch

    from crossscale_kit.eval.features import patch_features

    p = int(meta.get("patch_size", 16))
    x = normalise(img, meta)
    if img_size is None:
        H, W = (x.shape[1] // p) * p, (x.shape[2] // p) * p
        if H == 0 or W == 0:
            raise ValueError(f"image {img.shape[1:]} is smaller than one {p}-px patch; pass --img-size.")
        x = x[:, :H, :W]
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    return patch_features(model, t, img_size)[0].numpy()


def ward_clusters(features: np.ndarray, k: int = 3, brightness: np.ndarray | None = None) -> np.ndarray:
    """Ward clustering of ``(gh, gw, D)`` features into ``k`` clusters -> ``(gh, gw)`` ids in ``[0, k)``.

    Args:
        brightness: ``(gh, gw)`` image brightness per patch; ids are ordered by its mean per cluster.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    gh, gw, d = features.shape
    X = features.reshape(-1, d).astype(np.float64)
    if len(X) < k:
        raise ValueError(f"{len(X)} patches cannot form {k} clusters; use a larger image or smaller k.")
    labels = fcluster(linkage(X, method="ward"), t=k, criterion="maxclust") - 1
    if brightness is not None:
        b = brightness.reshape(-1)
        ids = np.unique(labels)
        order = ids[np.argsort([b[labels == i].mean() for i in ids])]
        remap = np.zeros(labels.max() + 1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        labels = remap[labels]
    return labels.reshape(gh, gw)


def pca_components(features: np.ndarray, n: int = 3) -> np.ndarray:
    """Projection of ``(N, D)`` features on their first ``n`` principal components, ``(N, n)`` float64.

    scikit-learn's ``PCA`` (full SVD of the centred features; signs fixed by its ``svd_flip``), so the
    components equal a plain SVD's up to the sign of each.
    """
    from sklearn.decomposition import PCA

    X = np.asarray(features, np.float64)
    k = min(n, *X.shape)
    Y = PCA(n_components=k, svd_solver="full").fit_transform(X)
    return np.pad(Y, ((0, 0), (0, n - k))) if k < n else Y


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """First three principal components of ``(gh, gw, D)`` features as an RGB image ``(gh, gw, 3)`` in [0, 1]."""
    gh, gw, d = features.shape
    Y = pca_components(features.reshape(-1, d), 3)
    lo, hi = np.percentile(Y, 2, axis=0), np.percentile(Y, 98, axis=0)
    return np.clip((Y - lo) / np.maximum(hi - lo, 1e-12), 0, 1).reshape(gh, gw, 3)


def rgb_image(img: np.ndarray, bands=BANDS) -> np.ndarray:
    """``(H, W, 3)`` display RGB in [0, 1] with a 2-98 % stretch per channel."""
    idx = [list(bands).index(b) for b in ("red", "green", "blue")]
    rgb = np.moveaxis(img[idx], 0, -1).astype(np.float64)
    lo = np.nanpercentile(rgb, 2, axis=(0, 1))
    hi = np.nanpercentile(rgb, 98, axis=(0, 1))
    return np.nan_to_num(np.clip((rgb - lo) / np.maximum(hi - lo, 1e-12), 0, 1))


def patch_brightness(img: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean raw value over bands of each patch cell ``(gh, gw)`` (image cropped to the grid)."""
    gh, gw = grid
    H, W = img.shape[1:]
    ph, pw = max(1, H // gh), max(1, W // gw)
    m = img[:, : gh * ph, : gw * pw].mean(0)
    return m.reshape(gh, ph, gw, pw).mean((1, 3))


def render(path: str | os.PathLike, rgb: np.ndarray, maps: list[tuple[str, np.ndarray, np.ndarray]], k: int) -> Path:
    """Save one PNG: RGB then one cluster map per encoder (top row), PCA maps below.

    Args:
        rgb: ``(H, W, 3)`` in [0, 1].
        maps: ``[(name, clusters (gh, gw), pca (gh, gw, 3))]``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(maps) + 1
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.6), squeeze=False)
    H, W = rgb.shape[:2]
    cmap = plt.get_cmap("viridis", k)
    for row in range(2):
        axes[row, 0].imshow(rgb, interpolation="nearest")
        axes[row, 0].set_title("RGB" if row == 0 else "RGB (PCA row)")
    for j, (name, cl, pc) in enumerate(maps, start=1):
        axes[0, j].imshow(cl, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest", extent=(0, W, H, 0))
        axes[0, j].set_title(f"{name}\n{len(np.unique(cl))} clusters (k={k})", fontsize=9)
        axes[1, j].imshow(pc, interpolation="nearest", extent=(0, W, H, 0))
        axes[1, j].set_title(f"{name}: PCA -> RGB", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from crossscale_kit.io import open_nofollow, temp_path

    tmp = temp_path(path)  # never through a link planted at the temp name
    with warnings.catch_warnings(), open_nofollow(tmp, "xb") as f:
        warnings.simplefilter("ignore")
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
