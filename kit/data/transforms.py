"""Paired transforms: one crop box on the ground for both sensors, per-sensor normalisation.

The paper applies one random-resized crop (scale 0.2-1, ratio 3/4-4/3) to both images in ground
coordinates, resizes MR to the model input and HR to ``s`` times that, and normalises each sensor with
its own per-band statistics. Both transforms take ``(C, h, w)`` MR and ``(C, s*h, s*w)`` HR arrays
(numpy or torch, any numeric dtype) and return float32 torch tensors.
"""
from __future__ import annotations

import math
from typing import Sequence

import gin
import numpy as np
import torch
import torch.nn.functional as F

# Authors' statistics in DN (reflectance x 10000), band order B2 B3 B4 B8 (blue, green, red, NIR).
S2_MEAN = (443.89, 715.68, 813.27, 2603.59)
S2_STD = (283.97, 389.34, 651.25, 811.83)
VENUS_MEAN = (444.30, 716.14, 813.64, 2605.50)
VENUS_STD = (279.91, 385.40, 648.59, 797.14)

FALSE_HR_MODES = (None, "bilinear", "bicubic")


def _as_float_tensor(x) -> torch.Tensor:
    """A fresh contiguous float32 tensor holding ``x`` (exactly one copy, so in-place ops are safe)."""
    if isinstance(x, torch.Tensor):
        return torch.empty(x.shape, dtype=torch.float32).copy_(x)
    return torch.from_numpy(np.array(x, dtype=np.float32, order="C", copy=True))


_OUT_OPS = {
    ("bilinear", False): "upsample_bilinear2d",
    ("bilinear", True): "_upsample_bilinear2d_aa",
    ("bicubic", False): "upsample_bicubic2d",
    ("bicubic", True): "_upsample_bicubic2d_aa",
}


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear", out: torch.Tensor | None = None,
           ) -> torch.Tensor:
    """Resize ``(C, h, w)`` float32 to ``(C, *size)``; antialiased when shrinking an axis.

    ``align_corners=False``, as ``F.interpolate``. Without ``out``: identity (no copy) when the size
    already matches. With ``out`` (a contiguous ``(C, *size)`` float32 tensor, e.g. a slot of a batch)
    the result is written there directly, saving a copy.
    """
    size = (int(size[0]), int(size[1]))
    same = tuple(x.shape[-2:]) == size
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if out is None:
        if same:
            return x
        return F.interpolate(x[None], size=size, mode=mode, align_corners=False, antialias=shrink)[0]
    if same:
        return out.copy_(x)
    try:
        op = getattr(torch.ops.aten, _OUT_OPS[(mode, shrink)]).out
        op(x[None], list(size), False, None, None, out=out[None])
    except (AttributeError, RuntimeError, KeyError):  # op signature changed: interpolate, then copy
        out.copy_(F.interpolate(x[None], size=size, mode=mode, align_corners=False, antialias=shrink)[0])
    return out


def false_hr_from_mr(mr, scale: int, mode: str = "bilinear") -> torch.Tensor:
    """The control experiment's "false HR": MR upsampled by ``scale``.

    Args:
        mr: ``(C, h, w)``.
        scale: integer ``s``.
        mode: ``"bilinear"`` or ``"bicubic"`` (``align_corners=False``).

    Returns:
        float32 ``(C, s*h, s*w)``: same ground, no detail beyond MR's.
    """
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"false_hr must be one of {FALSE_HR_MODES}, got {mode!r}.")
    x = _as_float_tensor(mr)
    return resize(x, (x.shape[-2] * scale, x.shape[-1] * scale), mode)


@gin.register
class SensorNormalize:
    """Per-sensor, per-band standardisation ``(x - mean) / std``.

    Args:
        mr_mean, mr_std: MR (Sentinel-2) statistics per band, DN units.
        hr_mean, hr_std: HR (VENuS) statistics per band, DN units.

    Defaults are the authors' Sen2Venus statistics, band order B2 B3 B4 B8. Call with float32 tensors
    ``mr (C, h, w)`` and ``hr (C, H, W)``; normalises in place and returns them. Because the crop's
    resampling is linear with weights summing to one, normalising before or after resizing gives the
    same result; the loader normalises the (smaller) crop before resizing.
    """

    def __init__(
        self,
        mr_mean: Sequence[float] = S2_MEAN,
        mr_std: Sequence[float] = S2_STD,
        hr_mean: Sequence[float] = VENUS_MEAN,
        hr_std: Sequence[float] = VENUS_STD,
    ) -> None:
        lens = {len(mr_mean), len(mr_std), len(hr_mean), len(hr_std)}
        if len(lens) != 1:
            raise ValueError(
                f"SensorNormalize statistics differ in length (mr_mean {len(mr_mean)}, mr_std {len(mr_std)}, "
                f"hr_mean {len(hr_mean)}, hr_std {len(hr_std)}); give one value per band for each."
            )
        for name, std in (("mr_std", mr_std), ("hr_std", hr_std)):
            if min(std) <= 0:
                raise ValueError(f"SensorNormalize.{name} must be positive, got {tuple(std)}.")
        self.bands = lens.pop()
        self.mr_mean = torch.tensor(mr_mean, dtype=torch.float32).view(-1, 1, 1)
        self.mr_scale = (1.0 / torch.tensor(mr_std, dtype=torch.float32)).view(-1, 1, 1)
        self.hr_mean = torch.tensor(hr_mean, dtype=torch.float32).view(-1, 1, 1)
        self.hr_scale = (1.0 / torch.tensor(hr_std, dtype=torch.float32)).view(-1, 1, 1)

    def __call__(self, mr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mr.shape[0] != self.bands or hr.shape[0] != self.bands:
            raise ValueError(
                f"SensorNormalize holds statistics for {self.bands} bands but got MR {tuple(mr.shape)} and HR "
                f"{tuple(hr.shape)}; give per-band statistics matching PairedTiles.bands."
            )
        mr = mr.sub_(self.mr_mean).mul_(self.mr_scale)
        hr = hr.sub_(self.hr_mean).mul_(self.hr_scale)
        return mr, hr

    def describe(self, view: str = "mr") -> dict:
        """The statistics applied to one sensor's images, for an exported encoder's ``meta.json``.

        Returns:
            ``{"mean": [...], "std": [...], "units": ...}``: feed ``(x - mean) / std`` per band.
        """
        if view not in ("mr", "hr"):
            raise ValueError(f"view must be 'mr' or 'hr', got {view!r}.")
        mean = self.mr_mean if view == "mr" else self.hr_mean
        scale = self.mr_scale if view == "mr" else self.hr_scale
        return {
            "mean": [round(float(v), 6) for v in mean.flatten()],
            "std": [round(float(v), 6) for v in (1.0 / scale).flatten()],
            "units": "DN (surface reflectance x 10000)",
        }

    def __repr__(self) -> str:
        return f"SensorNormalize(bands={self.bands})"


@gin.register
class PairedRandomResizedCrop:
    """One random-resized crop on the ground, applied to both sensors.

    The box is drawn in MR pixels as an integer box (as torchvision's ``RandomResizedCrop``): area
    fraction ``U(scale)``, log-uniform aspect ratio in ``ratio``, up to 10 tries, then a centre crop
    clamped to ``ratio``. The HR box is exactly ``s`` times it, so both crops cover the same ground.
    MR is resized to ``size``, HR to ``hr_size`` (default ``s * size``), bilinear, antialiased when
    shrinking; the same flips go to both.

    Args:
        size: MR output side ``S``.
        scale: range of the crop's area fraction (``(1, 1)`` = whole tile).
        ratio: range of the crop's width / height.
        hflip, vflip: probabilities of a horizontal / vertical flip of both crops.
        hr_size: HR output side, or None for ``s * size``.
        patch_jitter: None, or ``(cell, patch)``: LatentMIM's patch jitter. The crop is resized to
            ``size`` (a grid of ``size / cell`` cells), then every ``patch x patch`` patch is cut at a
            random offset inside its ``cell x cell`` cell and the patches are tiled into an image of side
            ``size * patch / cell`` (LatentMIM: cells of 20 px, patches of 16 px, 280 -> 224). HR cells,
            patches and offsets are scaled by ``hrS / S``, so each HR block still covers exactly the
            ground of its MR patch.

    Call ``crop(mr, hr, rng)`` with ``mr (C, h, w)``, ``hr (C, s*h, s*w)`` and a numpy Generator;
    returns float32 ``(C, S, S)`` and ``(C, hrS, hrS)``.
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.0,
        vflip: float = 0.0,
        hr_size: int | None = None,
        patch_jitter: tuple[int, int] | None = None,
    ) -> None:
        if int(size) != size or size < 1:
            raise ValueError(f"PairedRandomResizedCrop.size must be a positive integer, got {size!r}.")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"PairedRandomResizedCrop.scale must satisfy 0 < lo <= hi <= 1, got {tuple(scale)}.")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"PairedRandomResizedCrop.ratio must satisfy 0 < lo <= hi, got {tuple(ratio)}.")
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"PairedRandomResizedCrop.{name} is a probability in [0, 1], got {p}.")
        if hr_size is not None and (int(hr_size) != hr_size or hr_size < 1):
            raise ValueError(f"PairedRandomResizedCrop.hr_size must be a positive integer or None, got {hr_size!r}.")
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip, self.vflip = float(hflip), float(vflip)
        self.hr_size = None if hr_size is None else int(hr_size)
        self.patch_jitter = None
        if patch_jitter is not None:
            cell, patch = (int(v) for v in patch_jitter)
            if not 0 < patch <= cell or self.size % cell:
                raise ValueError(
                    f"PairedRandomResizedCrop.patch_jitter = {tuple(patch_jitter)} needs 0 < patch <= cell and size "
                    f"{self.size} divisible by the cell; LatentMIM uses (20, 16) with size 280."
                )
            if self.hr_size is not None and (self.hr_size * cell) % self.size:
                raise ValueError(f"hr_size {self.hr_size} must scale the {cell} px cells to whole pixels.")
            self.patch_jitter = (cell, patch)

    def get_params(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Draw the crop box ``(top, left, h, w)`` in MR pixels of an ``height x width`` tile."""
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def resize_sizes(self, scale: int) -> tuple[int, int]:
        """``(S, hrS)`` the crops are resized to (before any patch jitter)."""
        return self.size, self.hr_size or scale * self.size

    def output_sizes(self, scale: int) -> tuple[int, int]:
        """``(S, hrS)`` of the returned images for pairs of integer scale ``s``."""
        size, hr_size = self.resize_sizes(scale)
        if self.patch_jitter is None:
            return size, hr_size
        cell, patch = self.patch_jitter
        return size // cell * patch, hr_size // cell * patch

    def __call__(self, mr, hr, rng: np.random.Generator, normalize: SensorNormalize | None = None,
                 out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop, flip, (normalise), resize.

        Args:
            mr: ``(C, h, w)`` array or tensor.
            hr: ``(C, s*h, s*w)`` array or tensor.
            rng: numpy Generator of the box and flips.
            normalize: optional :class:`SensorNormalize` applied to the crops before resizing.
            out: optional contiguous ``(mr (C, S, S), hr (C, hrS, hrS))`` float32 tensors to write into.

        Returns:
            ``mr (C, S, S)``, ``hr (C, hrS, hrS)`` float32.
        """
        c, h, w = mr.shape
        s = hr.shape[-1] // w
        if hr.shape[-2] != s * h or hr.shape[-1] != s * w or s < 1:
            raise ValueError(f"HR {tuple(hr.shape)} is not an integer multiple of MR {tuple(mr.shape)}.")
        top, left, ch, cw = self.get_params(h, w, rng)
        flip_h = self.hflip > 0 and rng.random() < self.hflip
        flip_v = self.vflip > 0 and rng.random() < self.vflip
        mr_c = mr[:, top:top + ch, left:left + cw]
        hr_c = hr[:, s * top:s * (top + ch), s * left:s * (left + cw)]
        # Flipping the crop before resizing equals flipping after: the resampling grid is symmetric.
        if flip_h:
            mr_c, hr_c = _flip(mr_c, -1), _flip(hr_c, -1)
        if flip_v:
            mr_c, hr_c = _flip(mr_c, -2), _flip(hr_c, -2)
        mr_t, hr_t = _as_float_tensor(mr_c), _as_float_tensor(hr_c)
        if normalize is not None:
            mr_t, hr_t = normalize(mr_t, hr_t)
        size, hr_size = self.resize_sizes(s)
        mr_out, hr_out = out if out is not None else (None, None)
        if self.patch_jitter is None:
            return resize(mr_t, (size, size), out=mr_out), resize(hr_t, (hr_size, hr_size), out=hr_out)
        mr_r, hr_r = resize(mr_t, (size, size)), resize(hr_t, (hr_size, hr_size))
        cell, patch = self.patch_jitter
        grid = size // cell
        offsets = rng.integers(0, cell - patch + 1, size=(2, grid, grid))
        k = hr_size // size  # HR pixels per MR pixel of the resized pair (s, or 1 for HR-only runs)
        return (jitter_patches(mr_r, cell, patch, offsets, out=mr_out),
                jitter_patches(hr_r, k * cell, k * patch, k * offsets, out=hr_out))

    def __repr__(self) -> str:
        return (f"PairedRandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
                f"hflip={self.hflip}, vflip={self.vflip}, hr_size={self.hr_size}, patch_jitter={self.patch_jitter})")


def jitter_patches(x: torch.Tensor, cell: int, patch: int, offsets: np.ndarray,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """Cut one ``patch x patch`` window per ``cell x cell`` cell at the given offsets and tile them.

    Args:
        x: ``(C, G*cell, G*cell)``.
        offsets: ``(2, G, G)`` integer (row, column) offsets in ``[0, cell - patch]`` per cell.
        out: optional ``(C, G*patch, G*patch)`` tensor to write into.

    Returns:
        ``(C, G*patch, G*patch)``: patch ``(u, v)`` of the result is ``x[:, u*cell+dy : u*cell+dy+patch,
        v*cell+dx : v*cell+dx+patch]``.
    """
    g = x.shape[-1] // cell
    if x.shape[-2] != g * cell or x.shape[-1] != g * cell or offsets.shape != (2, g, g):
        raise ValueError(f"cannot jitter {tuple(x.shape)} with cells of {cell} and offsets {offsets.shape}.")
    # flat source index of output pixel (u*patch + i, v*patch + j): (u*cell + dy[u, v] + i) * W + v*cell + dx[u, v] + j
    width = g * cell
    base = (np.arange(g)[:, None] * cell + offsets[0]) * width + np.arange(g)[None, :] * cell + offsets[1]  # (G, G)
    inner = np.arange(patch)[:, None] * width + np.arange(patch)[None, :]  # (p, p)
    flat = (base[:, None, :, None] + inner[None, :, None, :]).reshape(-1)  # (G*p*G*p,) row-major output
    index = torch.from_numpy(flat)
    src = x.reshape(x.shape[0], -1)
    if out is not None:
        torch.index_select(src, 1, index, out=out.view(x.shape[0], -1))
        return out
    return torch.index_select(src, 1, index).view(x.shape[0], g * patch, g * patch)


def _flip(x, dim: int):
    if isinstance(x, torch.Tensor):
        return x.flip(dim)
    return np.flip(x, axis=dim)
