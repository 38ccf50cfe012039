"""MADOS (Marine Debris and Oil Spill) segmentation read from its per-band GeoTIFFs.

On-disk layout (Kikaki et al. 2024)::

    ROOT/Scene_<n>/10/Scene_<n>_L2R_rhorc_<wavelength>_<crop>.tif   one band per file, float reflectance,
                                                                     NaN = invalid; 240 x 240 at 10 m
    ROOT/Scene_<n>/10/Scene_<n>_L2R_cl_<crop>.tif                   labels: 0 unlabelled, 1..15 classes
    ROOT/Scene_<n>/20/Scene_<n>_L2R_rhorc_<wavelength>_<crop>.tif   20 m bands (red edge 704, 739/740,
                                                                     780/783; 864/865; SWIR), 120 x 120
    ROOT/Scene_<n>/60/...                                            60 m bands (442/443)
    ROOT/splits/{train,val,test}_X.txt                               one ``Scene_<n>_<crop>`` per line

The 10 m folder holds only 492, 559/560, 665 and 833 nm. Bands are matched by wavelength within
``tolerance_nm`` (Sentinel-2A and -2B name them slightly differently: 559 vs 560 nm), in ``10/`` first, then
``20/`` and ``60/``; a coarser band is resampled to the 10 m grid by pixel repetition (nearest neighbour,
as the dataset's own loader does). Labels become ``label - 1`` (15 classes, ``-1`` ignored).

NaN pixels (``nan_mode``): ``"ignore"`` (default, the paper authors' probe) gives every pixel where a
selected band is NaN the label ``-1``; ``"fill"`` (the dataset's official loader) keeps its label. Both set
the image value to 0 there (the band mean after normalisation). Normalisation is ``(x - mean) / std`` per
band with statistics of the train split (or given ones).

The authors' "NIR" for MADOS was index 6 of the 11-band B1..B12 stack, i.e. B7 (783 nm, 20 m); the kit's
``nir`` is B8 (833 nm, 10 m), the band the encoders were pretrained on. ``nir_nm=783`` reproduces theirs.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from crossscale_kit.eval.datasets import PRELOAD_GB, hold_split
from crossscale_kit.io import BANDS, CorruptSampleError

WAVELENGTHS = {"blue": 492, "green": 560, "red": 665, "nir": 833, "rededge1": 704, "rededge2": 740, "rededge3": 783,
               "nir_narrow": 865, "coastal": 443, "swir1": 1610, "swir2": 2190}
FOLDERS = ("10", "20", "60")  # resolution folders, searched in this order
NAN_MODES = ("ignore", "fill")
NUM_CLASSES = 15
CLASS_NAMES = [
    "marine_debris", "dense_sargassum", "sparse_floating_algae", "natural_organic_material", "ship",
    "oil_spill", "marine_water", "sediment_laden_water", "foam", "turbid_water", "shallow_water", "waves_wakes",
    "oil_platform", "jellyfish", "sea_snot",
]
_BAND_RE = re.compile(r"_L2R_rhorc_(\d+)_(\w+)\.tif$")


def _read_tif(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                return ds.read(1)
    except RasterioIOError as e:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; re-extract the MADOS archive.") from e
        raise CorruptSampleError(f"{path} is not a readable GeoTIFF ({e}); re-download the scene or pass skip_corrupt.") from e


class MADOS(Dataset):
    """One split of MADOS as ``(image, label)`` pairs.

    Args:
        root: the MADOS folder holding ``splits/`` and the ``Scene_<n>`` folders.
        split: ``train``, ``val`` or ``test`` (reads ``splits/<split>_X.txt``).
        bands: kit band names (default blue, green, red, NIR) or wavelengths in nm.
        stats: ``(mean, std)`` per band in reflectance; ``None`` computes them on the train split.
        tolerance_nm: how far a file's wavelength may be from the nominal one.
        skip_corrupt: drop unreadable crops (counted in ``self.skipped``) instead of raising.
        stats_samples: at most this many train crops enter the statistics.
        nan_mode: ``ignore`` (label -1 where a band is NaN; the authors') or ``fill`` (keep it; official).
        nir_nm: wavelength read for the band named ``nir`` (833 = B8; 783 = the authors' B7).

    Items:
        ``image`` ``(C, 240, 240)`` float32 normalised, ``label`` ``(240, 240)`` int64 in ``[-1, 15)``.
    """

    ignore_index = -1
    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        bands: tuple | list = BANDS,
        stats: tuple[list[float], list[float]] | None = None,
        tolerance_nm: float = 5.0,
        skip_corrupt: bool = False,
        stats_samples: int = 256,
        nan_mode: str = "ignore",
        nir_nm: float = WAVELENGTHS["nir"],
    ) -> None:
        if nan_mode not in NAN_MODES:
            raise ValueError(f"nan_mode {nan_mode!r} is not one of {NAN_MODES}.")
        self.nan_mode = nan_mode
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"MADOS root {self.root} does not exist; pass the folder holding splits/ and Scene_<n>/.")
        self.split = split
        self.wavelengths = []
        for b in bands:
            if isinstance(b, (int, float)) or str(b).isdigit():
                self.wavelengths.append(float(b))
            elif b == "nir":
                self.wavelengths.append(float(nir_nm))
            elif b in WAVELENGTHS:
                self.wavelengths.append(float(WAVELENGTHS[b]))
            else:
                raise ValueError(f"band {b!r} is unknown to MADOS; use one of {sorted(WAVELENGTHS)} or a wavelength in nm.")
        self.tolerance_nm = tolerance_nm
        self.crops = self._split(split)
        self.skipped: dict[str, int] = {}
        if skip_corrupt:
            good = []
            for c in self.crops:
                try:
                    self._read_raw(c)
                    good.append(c)
                except (CorruptSampleError, FileNotFoundError):
                    self.skipped["corrupt"] = self.skipped.get("corrupt", 0) + 1
            self.crops = good
        if stats is None:
            stats = self.compute_stats(stats_samples, skip_corrupt)
        mean, std = (np.asarray(s, np.float32) for s in stats)
        if mean.shape != (len(self.wavelengths),) or std.shape != mean.shape:
            raise ValueError(f"stats must give {len(self.wavelengths)} means and stds, got {mean.shape} and {std.shape}.")
        self.mean, self.std = mean[:, None, None], np.maximum(std, 1e-12)[:, None, None]
        self._held: list[tuple[np.ndarray, np.ndarray]] | None = None  # every item, after preload()

    def _split(self, split: str) -> list[tuple[str, str]]:
        path = self.root / "splits" / f"{split}_X.txt"
        if not path.is_file():
            have = sorted(p.name for p in (self.root / "splits").glob("*_X.txt")) if (self.root / "splits").is_dir() else []
            raise FileNotFoundError(f"split file {path} is missing (found {have or 'none'}); use split train, val or test.")
        crops = []
        for line in path.read_text().split():
            m = re.fullmatch(r"(Scene_\d+)_(\w+)", line.strip())
            if not m:
                raise ValueError(f"{path}: entry {line!r} is not of the form Scene_<n>_<crop>.")
            crops.append((m.group(1), m.group(2)))
        return crops

    def band_paths(self, scene: str, crop: str) -> list[Path]:
        """The per-band files of one crop, in the requested band order (``10/`` first, then ``20/``, ``60/``)."""
        if not (self.root / scene).is_dir():
            raise FileNotFoundError(f"{self.root / scene} is missing for crop {scene}_{crop}; re-extract the MADOS archive.")
        found: dict[float, Path] = {}
        for res in FOLDERS:
            for p in (self.root / scene / res).glob(f"{scene}_L2R_rhorc_*_{crop}.tif"):
                m = _BAND_RE.search(p.name)
                if m and m.group(2) == crop:
                    found.setdefault(float(m.group(1)), p)
        out = []
        for wl in self.wavelengths:
            near = [(abs(w - wl), p) for w, p in found.items() if abs(w - wl) <= self.tolerance_nm]
            if not near:
                folders = ", ".join(f"{scene}/{r}/" for r in FOLDERS)
                raise FileNotFoundError(
                    f"no band near {wl:g} nm for {scene}_{crop} in {folders} (found {sorted(found)} nm); the red-edge "
                    "bands live only in the 20 m folder 20/: check that it was extracted, the bands, or tolerance_nm."
                )
            out.append(min(near, key=lambda t: t[0])[1])
        return out

    def _read_raw(self, crop: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        scene, c = crop
        label = _read_tif(self.root / scene / "10" / f"{scene}_L2R_cl_{c}.tif").astype(np.int64)
        bands = []
        for p in self.band_paths(scene, c):
            band = _read_tif(p).astype(np.float32)
            if band.shape != label.shape:  # a 20 m / 60 m band: repeat its pixels onto the 10 m grid
                f = label.shape[0] // band.shape[0]
                if f < 1 or band.shape[0] * f != label.shape[0] or band.shape[1] * f != label.shape[1]:
                    raise CorruptSampleError(f"{p}: band {band.shape} does not tile the 10 m label grid {label.shape}.")
                band = np.repeat(np.repeat(band, f, 0), f, 1)
            bands.append(band)
        return np.stack(bands), label

    def compute_stats(self, max_samples: int = 256, skip_corrupt: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and std of the finite pixels of (up to ``max_samples``) train crops."""
        crops = self._split("train") if self.split != "train" else self.crops
        if not crops:
            raise ValueError(f"the train split of {self.root} is empty; pass stats explicitly.")
        step = max(1, len(crops) // max_samples)
        s = np.zeros(len(self.wavelengths))
        s2 = np.zeros(len(self.wavelengths))
        n = np.zeros(len(self.wavelengths))
        for crop in crops[::step]:
            try:
                image, _ = self._read_raw(crop)
            except (CorruptSampleError, FileNotFoundError):
                if skip_corrupt:
                    continue
                raise
            for b in range(image.shape[0]):
                v = image[b][np.isfinite(image[b])].astype(np.float64)
                s[b] += v.sum()
                s2[b] += (v * v).sum()
                n[b] += v.size
        if (n == 0).any():
            raise ValueError(f"no finite pixels in the train split of {self.root} for some band; pass stats explicitly.")
        mean = s / n
        return mean, np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))

    def __len__(self) -> int:
        return len(self.crops)

    def preload(self, max_gb: float = PRELOAD_GB) -> bool:
        """Hold the split's items in memory (:func:`crossscale_kit.eval.datasets.hold_split`), so that the faithful probe's
        epochs read no GeoTIFF again. False (items read from disk, as before) when it would take more than
        ``max_gb`` GiB."""
        if self._held is None:
            self._held = hold_split(range(len(self.crops)), self._item, max_gb)
        return self._held is not None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._held is not None:  # copies: the caller may change the item in place, never the held one
            image, label = self._held[i]
            return torch.from_numpy(image.copy()), torch.from_numpy(label.astype(np.int64))
        return tuple(torch.from_numpy(a) for a in self._item(i))

    def _item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i`` read from disk: ``(image (C, H, W) float32 normalised, label (H, W) int64)``."""
        image, label = self._read_raw(self.crops[i])
        invalid = ~np.isfinite(image).all(0)
        image = (image - self.mean) / self.std
        image[:, invalid] = 0.0
        label = label - 1
        if self.nan_mode == "ignore":
            label[invalid] = -1
        if label.max() >= NUM_CLASSES or label.min() < -1:
            raise CorruptSampleError(f"{self.crops[i]}: label values outside 0..{NUM_CLASSES}.")
        return np.ascontiguousarray(image, dtype=np.float32), label
