"""Synthetic paired MR/HR tiles: procedural 4-band scenes and a sensor-like degradation.

The HR tile is a rendered landscape at the HR ground sample distance (5 m for s = 2): Voronoi parcels
of crops (with row texture along a per-field direction), bare soil, grassland, forest (canopy texture),
urban blocks, water bodies, roads as anti-aliased lines, and buildings as bright rectangles with cast
shadows. Band order is the kit's (blue, green, red, NIR), values are surface reflectance x 10000.

The MR tile is the same ground seen by a coarser sensor: Gaussian optics blur chosen so that the
system MTF (Gaussian x pixel box) is ``mtf`` at the MR Nyquist frequency (Sentinel-2: about 0.3),
integration over ``s x s`` HR pixels, a per-band gain and offset (a different radiometric
calibration), and additive noise. So HR holds detail (row texture, building edges, thin roads) that
MR lacks, and MR is not a plain block mean of HR.

:func:`ensure_synthetic_cache` writes a config's pairs once as shards (see :mod:`crossscale_kit.data.writer`)
into a cache folder and returns it; the training loop uses it when no shard root is configured.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import gin
import numpy as np
from scipy import ndimage

from crossscale_kit.data.writer import PairShardWriter

GENERATOR_VERSION = 1

# Surface reflectance x 10000, bands (blue, green, red, NIR).
SPECTRA = {
    "vegetation": (300.0, 620.0, 330.0, 4200.0),
    "soil": (950.0, 1250.0, 1600.0, 2300.0),
    "grass": (420.0, 760.0, 600.0, 3300.0),
    "forest": (230.0, 430.0, 260.0, 3000.0),
    "water": (620.0, 680.0, 420.0, 180.0),
    "urban": (1100.0, 1200.0, 1300.0, 1750.0),
    "asphalt": (800.0, 880.0, 960.0, 1250.0),
    "roof_tile": (800.0, 1000.0, 1550.0, 2100.0),
    "roof_grey": (2100.0, 2250.0, 2400.0, 2650.0),
}
_CLASSES = ("crop", "soil", "grass", "forest", "urban", "water")
_CLASS_P = (0.44, 0.12, 0.15, 0.13, 0.11, 0.05)


@gin.register
@dataclasses.dataclass(frozen=True)
class SyntheticScenes:
    """Configuration of a synthetic paired-tile set.

    Args:
        mr_size: MR tile side ``h = w`` in pixels; the HR tile is ``scale * mr_size``.
        scale: integer HR/MR scale ``s`` (paper: 2, Sentinel-2 10 m vs VENuS 5 m).
        num_pairs: number of pairs in the set.
        seed: seed of the set; pair ``i`` depends only on ``(seed, i)`` and the other fields.
        shard_size: pairs per shard, or None for about 64 shards (8 to 256 pairs each) so that many
            ranks x workers can split the set.
        mtf: system MTF of the MR sensor at its Nyquist frequency (0 < mtf < 1).
        mr_noise: MR additive noise std (reflectance x 10000).
        hr_noise: HR additive noise std.
    """

    mr_size: int = 128
    scale: int = 2
    num_pairs: int = 1024
    seed: int = 0
    shard_size: int | None = None
    mtf: float = 0.3
    mr_noise: float = 25.0
    hr_noise: float = 15.0

    def __post_init__(self) -> None:
        if self.mr_size < 8:
            raise ValueError(f"SyntheticScenes.mr_size must be >= 8 pixels, got {self.mr_size}.")
        if self.scale < 1 or int(self.scale) != self.scale:
            raise ValueError(f"SyntheticScenes.scale must be an integer >= 1, got {self.scale}.")
        if self.num_pairs < 1:
            raise ValueError(f"SyntheticScenes.num_pairs must be >= 1, got {self.num_pairs}.")
        if not 0.0 < self.mtf < 1.0:
            raise ValueError(f"SyntheticScenes.mtf must be in (0, 1), got {self.mtf}; Sentinel-2 is about 0.3.")
        if self.shard_size is not None and self.shard_size < 1:
            raise ValueError(f"SyntheticScenes.shard_size must be >= 1 or None, got {self.shard_size}.")

    @property
    def hr_size(self) -> int:
        return self.mr_size * self.scale

    def resolved_shard_size(self) -> int:
        """Pairs per shard actually used (``shard_size`` or the automatic choice)."""
        if self.shard_size is not None:
            return int(self.shard_size)
        return int(min(256, max(8, math.ceil(self.num_pairs / 64))))

    def fingerprint(self) -> str:
        """Short hash of every field and the generator version: the cache folder's name."""
        fields = dataclasses.asdict(self)
        fields["shard_size"] = self.resolved_shard_size()
        fields["version"] = GENERATOR_VERSION
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def key(self, index: int) -> str:
        return f"synth-s{self.seed}-{index:07d}"

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``index`` of the set: ``(mr int16 (4, h, h), hr int16 (4, s*h, s*h))``."""
        return synthetic_pair(self, index)


# -- scene rendering -------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-std smooth noise ``(size, size)`` with about ``cells`` features per side."""
    cells = max(2, cells)
    coarse = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
    field = ndimage.zoom(coarse, size / (cells + 1), order=1, prefilter=False, grid_mode=True, mode="nearest")
    field = field[:size, :size]
    return (field - field.mean()) / (field.std() + 1e-6)


def render_scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """Render one HR landscape.

    Args:
        rng: source of every random choice.
        size: side of the HR tile in pixels.

    Returns:
        float32 ``(4, size, size)`` surface reflectance x 10000 (blue, green, red, NIR), noise-free.
    """
    area = (size / 256.0) ** 2
    yy = np.arange(size, dtype=np.float32)[:, None]
    xx = np.arange(size, dtype=np.float32)[None, :]
    veg, soil = np.array(SPECTRA["vegetation"], np.float32), np.array(SPECTRA["soil"], np.float32)

    # Parcels: Voronoi cells of jittered seed points (borders slightly warped).
    k = int(max(4, rng.integers(14, 36) * area))
    pts = rng.uniform(-0.05 * size, 1.05 * size, size=(k, 2)).astype(np.float32)
    # Warped pixel coordinates make the cell borders gently irregular, like real field edges.
    wy = yy + _smooth_noise(rng, size, 6) * (0.012 * size)
    wx = xx + _smooth_noise(rng, size, 6) * (0.012 * size)
    # |p - q|^2 up to the per-pixel constant |q|^2: |p|^2 - 2 p.q, evaluated for all k cells at once.
    const = (pts**2).sum(1)
    d = const[:, None, None] - 2.0 * (pts[:, 0, None, None] * wy[None] + pts[:, 1, None, None] * wx[None])
    label = np.argmin(d, axis=0)  # (H, W)

    cls = rng.choice(len(_CLASSES), size=k, p=_CLASS_P)
    spec = np.empty((k, 4), np.float32)
    contrast = np.zeros((k, 4), np.float32)
    texture = np.zeros(k, np.float32)
    for c, name in enumerate(_CLASSES):
        sel = cls == c
        n = int(sel.sum())
        if not n:
            continue
        jitter = rng.normal(1.0, 0.08, size=(n, 4)).astype(np.float32)
        if name == "crop":  # growth stage: fraction of green cover over soil
            cover = rng.uniform(0.25, 1.0, size=(n, 1)).astype(np.float32)
            spec[sel] = (cover * veg + (1 - cover) * soil) * jitter
            contrast[sel] = (veg - soil) * rng.uniform(0.15, 0.45, size=(n, 1)).astype(np.float32) * (1.2 - cover)
        elif name == "soil":
            spec[sel] = soil * rng.uniform(0.7, 1.25, size=(n, 1)).astype(np.float32) * jitter
            contrast[sel] = soil * rng.uniform(0.0, 0.12, size=(n, 1)).astype(np.float32)  # tillage lines
        else:
            spec[sel] = np.array(SPECTRA[name], np.float32) * jitter
        texture[sel] = {"crop": 0.04, "soil": 0.06, "grass": 0.08, "forest": 0.28, "urban": 0.15, "water": 0.03}[name]

    # Row texture: per-parcel direction and period (3-8 HR px), a sinusoid along the rows.
    theta = rng.uniform(0, np.pi, size=k).astype(np.float32)
    freq = (2 * np.pi / rng.uniform(3.0, 8.0, size=k)).astype(np.float32)
    phase = (xx * np.cos(theta)[label] + yy * np.sin(theta)[label]) * freq[label]
    rows = np.sin(phase)  # (H, W) in [-1, 1]

    img = spec[label].transpose(2, 0, 1) + contrast[label].transpose(2, 0, 1) * rows[None]

    # Canopy / surface texture (fine) and within-field variability (coarse).
    fine = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), 1.2)
    fine *= 1.0 / (fine.std() + 1e-6)
    coarse = _smooth_noise(rng, size, 5)
    img *= (1.0 + texture[label] * fine + 0.05 * coarse)[None]

    # Water body: a warped ellipse.
    if rng.random() < 0.45:
        cy, cx = rng.uniform(0, size, 2)
        a, b = rng.uniform(0.08, 0.3, 2) * size
        blob = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 + 0.35 * _smooth_noise(rng, size, 4)
        water = np.array(SPECTRA["water"], np.float32) * rng.normal(1.0, 0.1, 4).astype(np.float32)
        alpha = np.clip((1.0 - blob) * 6.0, 0.0, 1.0)[None]
        img = img * (1 - alpha) + water[:, None, None] * (1.0 + 0.02 * fine[None]) * alpha

    # Roads: anti-aliased straight lines 2-4 HR px wide.
    for _ in range(int(rng.integers(0, 4))):
        y0, x0 = rng.uniform(0, size, 2)
        t = rng.uniform(0, np.pi)
        dist = np.abs((xx - x0) * np.sin(t) - (yy - y0) * np.cos(t))
        half = rng.uniform(1.0, 2.0)
        alpha = np.clip(half + 0.5 - dist, 0.0, 1.0)[None]
        road = np.array(SPECTRA["asphalt"], np.float32) * rng.normal(1.0, 0.08, 4).astype(np.float32)
        img = img * (1 - alpha) + road[:, None, None] * alpha

    # Buildings: bright rectangles with a shadow cast away from the sun; dense on urban parcels.
    n_try = int(rng.integers(20, 60) * area) + 2
    centres = rng.uniform(0, size, size=(n_try, 2))
    on_urban = cls[label[centres[:, 0].astype(int), centres[:, 1].astype(int)]] == _CLASSES.index("urban")
    keep = on_urban | (rng.random(n_try) < 0.06)
    sun = rng.uniform(0, 2 * np.pi)
    sdy, sdx = int(round(2.5 * np.sin(sun))), int(round(2.5 * np.cos(sun)))
    shade = np.ones((size, size), np.float32)
    roofs = []
    for (cy, cx) in centres[keep]:
        hh, ww = rng.integers(3, 11, 2)
        y0, x0 = int(cy) - hh // 2, int(cx) - ww // 2
        ys, xs = slice(max(0, y0), max(0, min(size, y0 + hh))), slice(max(0, x0), max(0, min(size, x0 + ww)))
        sys_ = slice(max(0, y0 + sdy), max(0, min(size, y0 + hh + sdy)))
        sxs = slice(max(0, x0 + sdx), max(0, min(size, x0 + ww + sdx)))
        shade[sys_, sxs] = 0.4
        roof = SPECTRA["roof_tile"] if rng.random() < 0.5 else SPECTRA["roof_grey"]
        roofs.append((ys, xs, np.array(roof, np.float32) * rng.normal(1.0, 0.1, 4).astype(np.float32)))
    img *= shade[None]
    for ys, xs, roof in roofs:
        img[:, ys, xs] = roof[:, None, None]

    # Per-scene illumination / haze: a small gain and a blue-heavy path radiance.
    img *= rng.uniform(0.9, 1.1)
    img += np.array([120.0, 60.0, 30.0, 0.0], np.float32)[:, None, None] * rng.uniform(0.0, 1.0)
    return img.astype(np.float32, copy=False)


def mtf_sigma(scale: int, mtf: float) -> float:
    """Std (HR pixels) of the Gaussian optics blur of the MR sensor.

    The system MTF is the Gaussian's ``exp(-2 pi^2 sigma^2 f^2)`` times the ``s``-pixel box's
    ``sinc(s f)``; at the MR Nyquist frequency ``f = 1 / (2 s)`` cycles per HR pixel the box gives
    ``2 / pi`` and the Gaussian supplies the rest of ``mtf``.
    """
    f = 1.0 / (2.0 * scale)
    box = np.sinc(scale * f) if scale > 1 else 1.0
    g = min(mtf / box, 0.999)
    return float(np.sqrt(-np.log(g) / (2.0 * np.pi**2)) / f)


def degrade(scene: np.ndarray, scale: int, *, mtf: float = 0.3, gain=None, offset=None, noise: float = 0.0,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """The MR sensor's view of an HR scene.

    Args:
        scene: float32 ``(C, s*h, s*w)`` reflectance x 10000.
        scale: integer ``s``.
        mtf: system MTF at the MR Nyquist frequency.
        gain, offset: per-band ``(C,)`` calibration (default 1 and 0).
        noise: additive Gaussian noise std.
        rng: generator of the noise (needed when ``noise > 0``).

    Returns:
        float32 ``(C, h, w)``.
    """
    c, hh, ww = scene.shape
    if hh % scale or ww % scale:
        raise ValueError(f"scene {scene.shape} is not divisible by scale {scale}.")
    sigma = mtf_sigma(scale, mtf)
    blurred = ndimage.gaussian_filter(scene, sigma=(0, sigma, sigma), mode="reflect", truncate=3.0)
    mr = blurred.reshape(c, hh // scale, scale, ww // scale, scale).mean(axis=(2, 4))
    if gain is not None:
        mr *= np.asarray(gain, np.float32)[:, None, None]
    if offset is not None:
        mr += np.asarray(offset, np.float32)[:, None, None]
    if noise > 0:
        mr += rng.standard_normal(mr.shape, dtype=np.float32) * noise
    return mr


def sensor_calibration(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-band MR gain and offset of a synthetic set (fixed for the set, like a sensor's)."""
    rng = np.random.default_rng([seed, 0x5E2])
    gain = rng.normal(1.0, 0.03, 4).astype(np.float32)
    offset = rng.normal(0.0, 20.0, 4).astype(np.float32)
    return gain, offset


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 16000).astype(np.int16)


def synthetic_pair(config: SyntheticScenes, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``index`` of ``config``: ``(mr int16 (4, h, h), hr int16 (4, s*h, s*h))``."""
    rng = np.random.default_rng([config.seed, index, GENERATOR_VERSION])
    scene = render_scene(rng, config.hr_size)
    gain, offset = sensor_calibration(config.seed)
    mr = degrade(scene, config.scale, mtf=config.mtf, gain=gain, offset=offset, noise=config.mr_noise, rng=rng)
    scene += rng.standard_normal(scene.shape, dtype=np.float32) * config.hr_noise
    return _to_int16(mr), _to_int16(scene)


# -- the cache ----------------------------------------------------------------------------------------

def cache_root() -> Path:
    """``$CROSSSCALE_CACHE`` or ``~/.cache/crossscale``."""
    env = os.environ.get("CROSSSCALE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crossscale"


def write_synthetic_shards(config: SyntheticScenes, out: str | os.PathLike, *, shard_size: int | None = None,
                           progress: bool = True, indices: range | None = None) -> dict:
    """Write every pair of ``config`` as shards under ``out``; return the index.

    Args:
        config: the set.
        out: output folder (created).
        shard_size: pairs per shard (default: ``config.resolved_shard_size()``).
        progress: show a tqdm bar.
        indices: the pair indices to write, in order (default all; ``make_shards --part`` writes a block).
    """
    from tqdm.auto import tqdm

    shard_size = shard_size or config.resolved_shard_size()
    writer = PairShardWriter(out, shard_size, mr_gsd=5.0 * config.scale, hr_gsd=5.0)
    try:
        for i in tqdm(range(config.num_pairs) if indices is None else indices, desc=f"synthetic pairs -> {out}", unit="pair", disable=not progress,
                      mininterval=1.0):
            mr, hr = config.pair(i)
            writer.write(config.key(i), mr, hr, {"source": "synthetic", "seed": config.seed, "index": i})
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def ensure_synthetic_cache(config: SyntheticScenes | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a folder of shards holding ``config``'s pairs, writing it on first use.

    The folder is ``<cache_dir or $CROSSSCALE_CACHE or ~/.cache/crossscale>/synthetic-<fingerprint>``.
    It is built in a temporary sibling and renamed into place, so a reader never sees a half-written
    set; when two processes race, the first rename wins and the other's copy is discarded.

    Args:
        config: the set (default ``SyntheticScenes()``).
        cache_dir: parent folder of the cache entries.

    Returns:
        The shard root (holds ``pairs-*.tar`` and ``index.json``).
    """
    config = config or SyntheticScenes()
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    final = base / f"synthetic-{config.fingerprint()}"
    if (final / "index.json").is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=base))
    try:
        write_synthetic_shards(config, tmp)
        (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "index.json").is_file():
                # a stale, incomplete folder under the final name: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
