"""Paired transforms: one crop box on the ground for both sensors, per-sensor normalisation.

The paper applies one random-resized crop (scale 0.2-1, ratio 3/4-4/3) to both images in ground
coordinates, resizes MR to the model input and HR to ``s`` times that, and normalises each sensor with
its own per-band statistics. LatentMIM then cuts each 16 px patch at a random offset inside its 20 px
cell (patch jitter).

The work is split at the worker boundary: a worker draws the parameters of each pair
(:meth:`PairedRandomResizedCrop.draw`: crop box, flips, jitter offsets) and hands them over with the
int16 tiles; the training side resamples the whole batch in one ``grid_sample`` with a per-sample
sampling grid (:meth:`PairedRandomResizedCrop.apply`) and normalises it on the device. Bilinear,
``align_corners=False`` and clamped to the crop box, i.e. ``F.interpolate`` of the cropped tile; when an
axis shrinks, ``k x k`` sub-samples per output pixel are averaged (box antialiasing).
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
HR_JITTER_MODES = ("independent", "aligned")
PARAM_KEYS = ("box", "hr_box", "flip", "mr_offsets", "hr_offsets")
MR_RESIZE_MODES = ("bilinear", "nearest")
BOX_ON = ("mr", "hr")


def false_hr_from_mr(mr, scale: int, mode: str = "bilinear") -> torch.Tensor:
    """The control experiment's "false HR": MR upsampled by ``scale``.

    Args:
        mr: ``(C, h, w)`` or ``(B, C, h, w)`` array or tensor.
        scale: integer ``s``.
        mode: ``"bilinear"`` or ``"bicubic"`` (``align_corners=False``).

    Returns:
        float32 ``(..., C, s*h, s*w)``: same ground, no detail beyond MR's.
    """
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"false_hr must be one of {FALSE_HR_MODES}, got {mode!r}.")
    x = torch.as_tensor(np.asarray(mr) if not isinstance(mr, torch.Tensor) else mr).float()
    single = x.dim() == 3
    y = F.interpolate(x[None] if single else x, scale_factor=scale, mode=mode, align_corners=False)
    return y[0] if single else y


@gin.register
class SensorNormalize:
    """Per-sensor, per-band standardisation ``(x - mean) / std``.

    Args:
        mr_mean, mr_std: MR (Sentinel-2) statistics per band, DN units.
        hr_mean, hr_std: HR (VENuS) statistics per band, DN units.

    Defaults are the authors' Sen2Venus statistics, band order B2 B3 B4 B8. Call with float32 tensors
    ``mr (C, h, w)`` and ``hr (C, H, W)``; normalises in place and returns them. Because the crop's
    resampling is linear with weights summing to one, normalising before or after resizing gives the
    same result; the device side normalises the resampled batch (:meth:`batch`).
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

    def batch(self, mr: torch.Tensor | None, hr: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Normalise float batches ``mr (B, C, h, w)`` and ``hr (B, C, H, W)`` on their device (new tensors);
        a side given as None stays None."""
        if any(x is not None and x.shape[1] != self.bands for x in (mr, hr)):
            shapes = " and ".join(f"{n} {tuple(x.shape)}" for n, x in (("MR", mr), ("HR", hr)) if x is not None)
            raise ValueError(f"SensorNormalize holds statistics for {self.bands} bands but got {shapes}; give per-band "
                             "statistics matching PairedTiles.bands.")
        return (None if mr is None else (mr - self.mr_mean.to(mr.device)) * self.mr_scale.to(mr.device),
                None if hr is None else (hr - self.hr_mean.to(hr.device)) * self.hr_scale.to(hr.device))

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
    MR is resized to ``size``, HR to ``hr_size`` (default ``s * size``), bilinear; the same flips go to both.

    Args:
        size: MR output side ``S``.
        scale: range of the crop's area fraction (``(1, 1)`` = whole tile).
        ratio: range of the crop's width / height.
        hflip, vflip: probabilities of a horizontal / vertical flip of both crops.
        hr_size: HR output side, or None for ``s * size``.
        patch_jitter: None, or ``(cell, patch)``: LatentMIM's patch jitter. The crop is resized to
            ``size`` (a grid of ``size / cell`` cells), then every ``patch x patch`` patch is cut at a
            random offset in ``{0, ..., cell - patch - 1}`` (the released code's ``randint(0, patch_gap)``)
            inside its ``cell x cell`` cell and the patches are tiled into an image of side
            ``size * patch / cell`` (LatentMIM: cells of 20 px, patches of 16 px, offsets 0-3, 280 -> 224).
        hr_jitter: how the HR image is jittered. ``"independent"`` (the authors' fork, the paper recipe):
            HR gets its own offsets in its own ``cell x cell`` HR cells with ``patch x patch`` HR patches,
            so an HR patch sits a few HR pixels off its MR patch's ground. ``"aligned"`` (the kit's option):
            HR cells, patches and offsets are MR's scaled by ``hrS / S``, so each HR block covers exactly
            the ground of its MR patch.
        mr_resize: ``"bilinear"`` (the kit, with box antialiasing when the crop shrinks) or ``"nearest"``
            (the authors' I-JEPA fork: ``F.interpolate(mode="nearest")`` of the MR crop, source pixel
            ``floor(i * crop / S)``). HR is always bilinear.
        box_on: ``"mr"`` (the kit): the box is drawn in MR pixels and the HR box is exactly ``s`` times it.
            ``"hr"`` (both forks): the box is drawn on the HR tile and the MR box is its ``//s`` truncation,
            so the two crops may be off by up to one MR pixel.

    Use :meth:`draw` per pair in a worker and :meth:`apply` per batch on the device; ``crop(mr, hr, rng)``
    does both for one pair (``mr (C, h, w)``, ``hr (C, s*h, s*w)``) and returns float32 ``(C, S', S')``,
    ``(C, hrS', hrS')`` with ``(S', hrS') = output_sizes(s)``.
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
        hr_jitter: str = "independent",
        mr_resize: str = "bilinear",
        box_on: str = "mr",
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
        if hr_jitter not in HR_JITTER_MODES:
            raise ValueError(f"PairedRandomResizedCrop.hr_jitter must be one of {HR_JITTER_MODES}, got {hr_jitter!r}.")
        if mr_resize not in MR_RESIZE_MODES:
            raise ValueError(f"PairedRandomResizedCrop.mr_resize must be one of {MR_RESIZE_MODES}, got {mr_resize!r}.")
        if box_on not in BOX_ON:
            raise ValueError(f"PairedRandomResizedCrop.box_on must be one of {BOX_ON}, got {box_on!r}.")
        self.mr_resize, self.box_on = mr_resize, box_on
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip, self.vflip = float(hflip), float(vflip)
        self.hr_size = None if hr_size is None else int(hr_size)
        self.hr_jitter = hr_jitter
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
            if self.hr_size is not None and hr_jitter == "independent" and self.hr_size % cell:
                raise ValueError(f"hr_size {self.hr_size} must be a multiple of the {cell} px cells with "
                                 f"hr_jitter = 'independent' (or set hr_jitter = 'aligned').")
            self.patch_jitter = (cell, patch)

    # -- sizes -------------------------------------------------------------------------------------------
    def resize_sizes(self, scale: int) -> tuple[int, int]:
        """``(S, hrS)`` the crops are resized to (before any patch jitter)."""
        return self.size, self.hr_size or scale * self.size

    def output_sizes(self, scale: int) -> tuple[int, int]:
        """``(S', hrS')`` of the returned images for pairs of integer scale ``s``."""
        size, hr_size = self.resize_sizes(scale)
        if self.patch_jitter is None:
            return size, hr_size
        cell, patch = self.patch_jitter
        return size // cell * patch, hr_size // cell * patch

    def _jitter(self, scale: int) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        """``((G, cell, patch) of MR, (G, cell, patch) of HR)`` in resized pixels, or None without jitter."""
        if self.patch_jitter is None:
            return None
        cell, patch = self.patch_jitter
        size, hr_size = self.resize_sizes(scale)
        if self.hr_jitter == "independent":
            return (size // cell, cell, patch), (hr_size // cell, cell, patch)
        k = hr_size // size  # aligned: HR cells, patches and offsets are MR's times hrS / S
        return (size // cell, cell, patch), (size // cell, k * cell, k * patch)

    # -- the worker side: parameters of one pair -------------------------------------------------------
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

    def param_shapes(self, scale: int) -> dict[str, tuple[int, ...]]:
        """Shape of each parameter of one pair (the batch stacks them on a leading axis)."""
        shapes = {"box": (4,), "flip": (2,)}
        if self.box_on == "hr":
            shapes["hr_box"] = (4,)
        jit = self._jitter(scale)
        if jit is not None:
            shapes["mr_offsets"] = (2, jit[0][0], jit[0][0])
            if self.hr_jitter == "independent":
                shapes["hr_offsets"] = (2, jit[1][0], jit[1][0])
        return shapes

    def draw(self, height: int, width: int, scale: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The random parameters of one pair of an ``height x width`` MR tile.

        Returns:
            ``box`` int32 ``(4,)`` (top, left, h, w in MR pixels), with ``box_on = "hr"`` also ``hr_box``
            int32 ``(4,)`` in HR pixels, ``flip`` bool ``(2,)`` (horizontal,
            vertical) and, with patch jitter, ``mr_offsets`` int8 ``(2, G, G)`` (row, column offset per
            cell) and, with independent HR jitter, ``hr_offsets`` int8 ``(2, Gh, Gh)``.
        """
        if self.box_on == "hr":  # the forks: drawn on HR, truncated to MR pixels
            hr_box = self.get_params(scale * height, scale * width, rng)
            mr_box = [v // scale for v in hr_box]
            mr_box[2:] = [max(1, v) for v in mr_box[2:]]
            out = {"box": np.asarray(mr_box, dtype=np.int32), "hr_box": np.asarray(hr_box, dtype=np.int32)}
        else:
            out = {"box": np.asarray(self.get_params(height, width, rng), dtype=np.int32)}
        flip_h = self.hflip > 0 and rng.random() < self.hflip
        flip_v = self.vflip > 0 and rng.random() < self.vflip
        out["flip"] = np.asarray([flip_h, flip_v], dtype=bool)
        shapes = self.param_shapes(scale)
        if self.patch_jitter is not None:
            cell, patch = self.patch_jitter
            values = max(1, cell - patch)  # offsets 0 .. cell - patch - 1
            for name in ("mr_offsets", "hr_offsets"):
                if name in shapes:
                    out[name] = rng.integers(0, values, size=shapes[name]).astype(np.int8)
        return out

    # -- the device side: one batched resampling ---------------------------------------------------------
    def supersampling(self, box: torch.Tensor, scale: int) -> tuple[int, int]:
        """Sub-samples per output pixel and axis ``(k_mr, k_hr)`` for CPU boxes ``(B, 4)``: ``ceil(crop / S)``."""
        size, hr_size = self.resize_sizes(scale)
        longest = int(box[:, 2:].max()) if box.numel() else 1
        k_mr = 1 if self.mr_resize == "nearest" else max(1, math.ceil(longest / size))
        hr_longest = longest * scale + (scale - 1 if self.box_on == "hr" else 0)  # "hr": up to s - 1 px longer
        return k_mr, max(1, math.ceil(hr_longest / hr_size))

    def apply(self, mr: torch.Tensor, hr: torch.Tensor | None, params: dict[str, torch.Tensor], scale: int,
              normalize: SensorNormalize | None = None, false_hr: str | None = None,
              supersample: tuple[int, int] | None = None, views: tuple[str, ...] = ("mr", "hr"),
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Crop, flip, resize, jitter (and normalise) a batch in one ``grid_sample`` per sensor.

        Args:
            mr: ``(B, C, h, w)`` tiles of any numeric dtype (int16 from the loader), on the target device.
            hr: ``(B, C, s*h, s*w)`` tiles, or None with ``false_hr``.
            params: the :meth:`draw` results stacked, ``box (B, 4)``, ``flip (B, 2)`` ..., same device.
            scale: the pairs' integer scale ``s``.
            normalize: optional :class:`SensorNormalize` applied to the result.
            false_hr: None, or ``"bilinear"``/``"bicubic"``: HR is MR upsampled by ``s`` (control experiment).
            supersample: ``(k_mr, k_hr)`` from :meth:`supersampling` (computed from ``params`` if None; that
                reads the boxes, a host sync on a GPU).
            views: the sensors to produce (``"mr"``, ``"hr"``); one left out is returned as None and costs
                nothing (an MR-only run never resamples HR). A view's pixels do not depend on the other.

        Returns:
            float32 ``mr (B, C, S', S')`` and ``hr (B, C, hrS', hrS')`` (None where not in ``views``).
        """
        if not views or set(views) - {"mr", "hr"}:
            raise ValueError(f"views must name 'mr' and/or 'hr', got {tuple(views)!r}.")
        if supersample is None:
            supersample = self.supersampling(params["box"].cpu(), scale)
        size, hr_size = self.resize_sizes(scale)
        jit = self._jitter(scale)
        box = params["box"].to(torch.float32)
        flip = params["flip"].to(torch.bool)
        mr_jit = hr_jit = None
        if jit is not None:
            mr_jit = (*jit[0][1:], params["mr_offsets"])
            hr_off = params["hr_offsets"] if self.hr_jitter == "independent" else params["mr_offsets"] * (
                hr_size // size)
            hr_jit = (*jit[1][1:], hr_off)
        x = mr.to(torch.float32)
        m = h = None
        if "mr" in views:
            m = _resample(x, box, size, flip, mr_jit, supersample[0], nearest=self.mr_resize == "nearest")
        if "hr" in views:
            y = false_hr_from_mr(x, scale, false_hr) if false_hr is not None else hr.to(torch.float32)
            hr_box = params["hr_box"].to(torch.float32) if "hr_box" in params else box * scale
            h = _resample(y, hr_box, hr_size, flip, hr_jit, supersample[1])
        if normalize is not None:
            m, h = normalize.batch(m, h)
        return m, h

    def __call__(self, mr, hr, rng: np.random.Generator, normalize: SensorNormalize | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw and apply for one pair: ``mr (C, h, w)``, ``hr (C, s*h, s*w)`` -> float32 crops."""
        c, h, w = mr.shape
        s = hr.shape[-1] // w
        if hr.shape[-2] != s * h or hr.shape[-1] != s * w or s < 1:
            raise ValueError(f"HR {tuple(hr.shape)} is not an integer multiple of MR {tuple(mr.shape)}.")
        params = {k: torch.from_numpy(v)[None] for k, v in self.draw(h, w, s, rng).items()}
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))[None]  # noqa: E731
        m, hh = self.apply(as_t(mr), as_t(hr), params, s, normalize)
        return m[0], hh[0]

    def __repr__(self) -> str:
        return (f"PairedRandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
                f"hflip={self.hflip}, vflip={self.vflip}, hr_size={self.hr_size}, patch_jitter={self.patch_jitter}, "
                f"hr_jitter={self.hr_jitter!r}, mr_resize={self.mr_resize!r}, box_on={self.box_on!r})")


def _positions(n: int, k: int, jitter, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per axis: position in the resized image of each of the ``n' * k`` sub-samples, before the cell offsets.

    Returns:
        ``base (n'k,)`` the output pixel's position, ``frac (n'k,)`` the sub-sample's offset from it in
        ``(-0.5, 0.5)`` and, with jitter, the cell index ``(n'k,)`` of each (None without).
    """
    frac = ((torch.arange(n * k if jitter is None else n // jitter[0] * jitter[1] * k, device=device) % k).float()
            + 0.5) / k - 0.5
    p = torch.arange(frac.numel(), device=device) // k
    if jitter is None:
        return p.float(), frac, None
    cell, patch, _ = jitter
    u = p // patch
    return (u * cell + p % patch).float(), frac, u


def _resample(x: torch.Tensor, box: torch.Tensor, size: int, flip: torch.Tensor, jitter, k: int,
              nearest: bool = False) -> torch.Tensor:
    """Crop ``box`` (B, 4: top, left, h, w in x's pixels) of ``x`` (B, C, H, W), resize to ``size``, flip, jitter.

    Every output pixel's source position is computed in closed form and sampled bilinearly; with ``k > 1``
    the ``k x k`` sub-samples of each output pixel are averaged. Positions are clamped to the crop box's
    pixel centres, so the result equals ``F.interpolate`` of the cropped tile (align_corners=False).
    ``nearest``: output pixel ``i`` takes source pixel ``floor(i * (crop / size))`` (``F.interpolate``'s
    ``"nearest"``), read exactly at its centre; ``k`` is ignored.
    """
    B, _, H, W = x.shape
    base, frac, cell_of = _positions(size, k, jitter, x.device)
    n = base.numel()
    top, left, ch, cw = (box[:, i].view(B, 1, 1) for i in range(4))
    # sub-samples spread over the output pixel only on an axis this sample shrinks; elsewhere they coincide
    # and the average is plain bilinear, so a pair's result does not depend on the rest of its batch
    ry = base.view(1, n, 1) + frac.view(1, n, 1) * (ch > size).to(x.dtype)
    rx = base.view(1, 1, n) + frac.view(1, 1, n) * (cw > size).to(x.dtype)
    widen_y = widen_x = lambda t: t  # noqa: E731
    if jitter is not None:
        # A sub-sample's offset depends on its own axis and the cell it falls in on the other axis, so the
        # y positions are computed for (B, n, G) (row, cell column) and the x positions for (B, G, n), then
        # widened to (B, n, n) by copying: the same per-element arithmetic on n / G times fewer elements.
        off = jitter[2].to(torch.float32)  # (B, 2, G, G)
        ry = ry + off[:, 0][:, cell_of, :]  # (B, n, G): offset of the cell (row of the sample, column c)
        rx = rx + off[:, 1][:, :, cell_of]  # (B, G, n)
        widen_y, widen_x = (lambda t: t[:, :, cell_of]), (lambda t: t[:, cell_of, :])  # noqa: E731
    ry = torch.where(flip[:, 1].view(B, 1, 1), size - 1 - ry, ry)
    rx = torch.where(flip[:, 0].view(B, 1, 1), size - 1 - rx, rx)
    if nearest:
        sy = top + torch.minimum(torch.floor(ry * (ch / size)), ch - 1)
        sx = left + torch.minimum(torch.floor(rx * (cw / size)), cw - 1)
    else:
        sy = torch.minimum(torch.maximum(top + (ry + 0.5) * ch / size - 0.5, top), top + ch - 1)
        sx = torch.minimum(torch.maximum(left + (rx + 0.5) * cw / size - 0.5, left), left + cw - 1)
    gx, gy = widen_x((2 * sx + 1) / W - 1), widen_y((2 * sy + 1) / H - 1)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)
    if nearest:
        return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(out, k) if k > 1 else out
