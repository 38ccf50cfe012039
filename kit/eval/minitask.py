"""A miniature downstream segmentation task where HR detail matters, and its scaled-down linear probe.

The scenes come from the pretraining generator (:func:`crossscale_kit.data.synthetic.render_scene`): each HR tile is
a landscape drawn exactly as the pretraining tiles are (class 0, ``other``), onto which labelled objects
are painted with the generator's spectra:

* ``row crop`` (1), ``meadow`` (2) and ``hamlet`` (3): one to three soft-edged, warped elliptic parcels
  per tile. All three are given the *same mean spectrum* per band (a vegetation/soil mix with a random
  cover of 35-75 %), so an observer that sees only the parcel-average colour cannot tell them apart. They
  differ only in structure at 2-7 HR px: crop rows of period 3-6 HR px (1.5-3 MR px, straddling the MR
  Nyquist period of 2 MR px), small roofs of 2-3 HR px with cast shadows on a 5-7 HR px lattice, or a
  smooth sward. HR resolves every one of these patterns; the MR sensor attenuates them (system MTF 0.3
  at its Nyquist frequency) and aliases the finer rows.
* ``track`` (4): zero to two straight unpaved tracks 1.0-1.6 HR px wide (0.5-0.8 MR px), thinner than the
  generator's own roads (which stay ``other``).

The MR image is the pretraining sensor's view of the same ground: :func:`crossscale_kit.data.synthetic.degrade` with
the pretraining set's MTF, noise, scale and per-band calibration (:func:`crossscale_kit.data.synthetic.sensor_calibration`
of its seed). Labels are per MR pixel: the class covering most of the pixel's ``s x s`` HR block, a track
counting double (a track covering a third of the block wins), so tracks stay about one MR pixel wide.

The scenes are disjoint from the pretraining pairs by construction and by check: scene ``(split, i)``
draws from ``default_rng([TAG, TASK_VERSION, split id, i, GENERATOR_VERSION])`` while pretraining pair
``i`` draws from ``default_rng([seed, i, GENERATOR_VERSION])``; :func:`assert_disjoint` compares the
streams' first states. Splits are disjoint from each other by their split id. The splits are rendered on
first use and cached as one ``.npz`` per split under ``<cache>/minitask-<fingerprint>/`` (no download).

The probe (:func:`probe_encoder`) is the paper's protocol scaled down: frozen encoder -> patch tokens
``(N, g*g, D)`` -> ``Linear(D, C)`` -> bilinear upsampling to the label size -> cross-entropy; AdamW at a
constant learning rate 1e-3, weight decay 0, batch 64; the head with the best validation mIoU is scored
on test. Scaled down: fewer epochs, each 32 px scene cut into 4 x 4 tiles resized by 224/64 as the authors
do, no crop augmentation, so the features are computed once. It keeps one confusion matrix per test scene for
bootstrap intervals. ``heads > 1`` fits that many heads (probe seeds ``seed + 1000 k``) on the same features
and pools their test confusions: the linear probe's own seed noise averages out, the encoder's stays.
:func:`supervised_ceiling` trains a small fully convolutional network on the MR images (the ceiling).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossscale_kit.data.synthetic import (GENERATOR_VERSION, SPECTRA, SyntheticScenes, _smooth_noise, cache_root, degrade,
                                render_scene, sensor_calibration)
from crossscale_kit.eval.miou import mean_iou

TASK_VERSION = 1
TAG = 0x6D696E69  # "mini": first word of every task seed, never a pretraining set's seed in practice (checked)
CLASSES = ("other", "row crop", "meadow", "hamlet", "track")
SPLIT_IDS = {"train": 1, "val": 2, "test": 3, "figure": 4}


@dataclasses.dataclass(frozen=True)
class MiniTask:
    """The task's size and the sensor it is seen through.

    Args:
        mr_size: MR tile side in pixels (the HR scene is ``sensor.scale * mr_size``).
        num_train, num_val, num_test: tiles per split.
        sensor: the pretraining set: its ``scale``, ``mtf``, ``mr_noise`` and calibration seed make the MR view.
    """

    mr_size: int = 32
    num_train: int = 512
    num_val: int = 128
    num_test: int = 256
    sensor: SyntheticScenes = SyntheticScenes()

    def __post_init__(self) -> None:
        if self.mr_size < 8 or min(self.num_train, self.num_val, self.num_test) < 1:
            raise ValueError(f"MiniTask needs mr_size >= 8 and >= 1 tile per split, got {self}.")

    @property
    def num_classes(self) -> int:
        return len(CLASSES)

    def size(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]

    def seed_of(self, split: str, index: int) -> list[int]:
        """Entropy of scene ``index`` of ``split`` (see the module docstring)."""
        if split not in SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_IDS)}.")
        return [TAG, TASK_VERSION, SPLIT_IDS[split], int(index), GENERATOR_VERSION]

    def fingerprint(self) -> str:
        fields = dataclasses.asdict(self)
        fields["sensor"] = {k: fields["sensor"][k] for k in ("scale", "mtf", "mr_noise", "hr_noise", "seed")}
        fields["version"] = (TASK_VERSION, GENERATOR_VERSION)
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def scene(self, split: str, index: int, mr_size: int | None = None) -> dict[str, np.ndarray]:
        """Render one scene: ``{"mr" int16 (4, h, h), "hr" int16 (4, s*h, s*h), "label" int8 (h, h), "hr_label"}``."""
        s, h = self.sensor.scale, mr_size or self.mr_size
        rng = np.random.default_rng(self.seed_of(split, index))
        scene = render_scene(rng, s * h)
        hr_label, track = _paint_objects(rng, scene)
        gain, offset = sensor_calibration(self.sensor.seed)
        mr = degrade(scene, s, mtf=self.sensor.mtf, gain=gain, offset=offset, noise=self.sensor.mr_noise, rng=rng)
        hr = scene + rng.standard_normal(scene.shape, dtype=np.float32) * self.sensor.hr_noise
        return {"mr": _int16(mr), "hr": _int16(hr), "label": mr_labels(hr_label, track, s), "hr_label": hr_label}


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 16000).astype(np.int16)


def _paint_objects(rng: np.random.Generator, scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paint parcels and tracks onto ``scene (4, H, H)`` in place; return ``(hr_label int8 (H, H), track alpha (H, H))``."""
    size = scene.shape[-1]
    yy = np.arange(size, dtype=np.float32)[:, None]
    xx = np.arange(size, dtype=np.float32)[None, :]
    veg, soil = np.array(SPECTRA["vegetation"], np.float32), np.array(SPECTRA["soil"], np.float32)
    label = np.zeros((size, size), np.int8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, 4))
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        a, b = rng.uniform(0.18, 0.4, 2) * size
        blob = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 + 0.3 * _smooth_noise(rng, size, 4)
        alpha = np.clip((1.0 - blob) * 6.0, 0.0, 1.0)
        inside = alpha > 0.5
        if not inside.any():
            continue
        cover = rng.uniform(0.35, 0.75)
        target = (cover * veg + (1 - cover) * soil) * rng.normal(1.0, 0.05, 4).astype(np.float32)
        fill = _parcel_fill(rng, cls, size, yy, xx, cover, veg, soil)
        fill *= (target / fill[:, inside].mean(1))[:, None, None]  # same mean spectrum for the three classes
        fine = ndimage_fine(rng, size)
        fill *= 1.0 + 0.03 * fine[None]
        scene *= 1 - alpha[None]
        scene += fill * alpha[None]
        label[inside] = cls
    track = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(0, 3))):
        y0, x0 = rng.uniform(0.2, 0.8, 2) * size
        t = rng.uniform(0, np.pi)
        dist = np.abs((xx - x0) * np.sin(t) - (yy - y0) * np.cos(t))
        a = np.clip(rng.uniform(0.5, 0.8) + 0.5 - dist, 0.0, 1.0)
        colour = soil * rng.uniform(1.1, 1.4) * rng.normal(1.0, 0.05, 4).astype(np.float32)
        scene *= 1 - a[None]
        scene += colour[:, None, None] * a[None]
        track = np.maximum(track, a)
    label[track >= 0.5] = 4
    return label, track


def ndimage_fine(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit-std fine noise ``(size, size)`` (about 1 HR px correlation)."""
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), 1.0)
    return f / (f.std() + 1e-6)


def _parcel_fill(rng, cls: int, size: int, yy, xx, cover: float, veg, soil) -> np.ndarray:
    """``(4, size, size)`` surface of one parcel class before its mean is matched."""
    if cls == 1:  # row crop: vegetation rows of period 3-6 HR px over soil, duty cycle = cover
        theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 6.0)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period) + rng.uniform(0, 2 * np.pi)
        ind = np.clip((np.sin(phase) - np.cos(np.pi * cover)) / 0.3 + 0.5, 0.0, 1.0)
        return ind[None] * veg[:, None, None] + (1 - ind[None]) * soil[:, None, None]
    if cls == 2:  # meadow: a smooth sward with gentle large-scale variation
        mix = cover * veg + (1 - cover) * soil
        return mix[:, None, None] * (1.0 + 0.04 * _smooth_noise(rng, size, 3))[None]
    # hamlet: 2-3 px roofs with shadows on a jittered 5-7 px lattice over grass
    out = np.broadcast_to(np.array(SPECTRA["grass"], np.float32)[:, None, None], (4, size, size)).copy()
    step = rng.uniform(5.0, 7.0)
    sun = rng.uniform(0, 2 * np.pi)
    sdy, sdx = int(round(1.5 * np.sin(sun))), int(round(1.5 * np.cos(sun)))
    for cy in np.arange(rng.uniform(0, step), size, step):
        for cx in np.arange(rng.uniform(0, step), size, step):
            y0, x0 = int(cy + rng.uniform(-1, 1)), int(cx + rng.uniform(-1, 1))
            hh, ww = rng.integers(2, 4, 2)
            out[:, max(0, y0 + sdy):max(0, y0 + hh + sdy), max(0, x0 + sdx):max(0, x0 + ww + sdx)] *= 0.45
            roof = SPECTRA["roof_grey"] if rng.random() < 0.5 else SPECTRA["roof_tile"]
            out[:, max(0, y0):max(0, y0 + hh), max(0, x0):max(0, x0 + ww)] = np.array(roof, np.float32)[:, None, None]
    return out


def mr_labels(hr_label: np.ndarray, track: np.ndarray, scale: int) -> np.ndarray:
    """MR-pixel labels ``(h, w)`` int8 from HR labels ``(s*h, s*w)``: majority class of each ``s x s`` block, a track counting double."""
    H, W = hr_label.shape
    onehot = (hr_label[None] == np.arange(len(CLASSES), dtype=np.int8)[:, None, None]).astype(np.float32)
    onehot[4] = track
    cov = onehot.reshape(len(CLASSES), H // scale, scale, W // scale, scale).mean((2, 4))
    cov[4] *= 2.0
    return cov.argmax(0).astype(np.int8)


def assert_disjoint(task: MiniTask, pretrain: SyntheticScenes) -> None:
    """Raise ``AssertionError`` if any task scene shares its random stream with a pretraining pair."""
    def state(entropy):
        return tuple(np.random.SeedSequence(entropy).generate_state(4))

    pre = {state([pretrain.seed, i, GENERATOR_VERSION]) for i in range(pretrain.num_pairs)}
    for split in ("train", "val", "test", "figure"):
        n = task.size(split) if split != "figure" else 1
        clash = [i for i in range(n) if state(task.seed_of(split, i)) in pre]
        assert not clash, f"task {split} scenes {clash[:5]} share a random stream with the pretraining set {pretrain}"


def load_split(task: MiniTask, split: str, cache_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """``{"mr" int16 (N, 4, h, h), "label" int8 (N, h, h)}`` of a split, rendered once and cached."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    folder = base / f"minitask-{task.fingerprint()}"
    path = folder / f"{split}.npz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        scenes = [task.scene(split, i) for i in range(task.size(split))]
        fd, tmp = tempfile.mkstemp(prefix=f".{split}.", suffix=".npz", dir=folder)
        os.close(fd)
        try:
            np.savez(tmp, mr=np.stack([s["mr"] for s in scenes]), label=np.stack([s["label"] for s in scenes]))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        (folder / "task.json").write_text(json.dumps(dataclasses.asdict(task), indent=2))
    with np.load(path) as z:
        return {"mr": z["mr"], "label": z["label"]}


def normalise(mr: np.ndarray, normalization: dict | None) -> torch.Tensor:
    """``(N, C, h, w)`` float32 ``(x - mean) / std`` with an export's ``meta["normalization"]`` (else the split's own)."""
    x = torch.from_numpy(mr.astype(np.float32))
    if normalization and "mean" in normalization:
        mean = torch.tensor(normalization["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(normalization["std"], dtype=torch.float32).view(1, -1, 1, 1)
    else:
        mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True) + 1e-6
    return (x - mean) / std


def tile_confusions(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """Per-tile confusion matrices ``(N, C, C)`` int64 (rows = label) of ``pred``/``target`` ``(N, h, w)``."""
    n = pred.shape[0]
    idx = (torch.arange(n).view(-1, 1) * num_classes + target.reshape(n, -1).long()) * num_classes + pred.reshape(n, -1).long()
    return torch.bincount(idx.reshape(-1), minlength=n * num_classes**2).reshape(n, num_classes, num_classes).numpy()


def seeded_init(module: nn.Module, seed: int) -> nn.Module:
    """Draw the default initialisation of ``module``'s Linear and Conv2d layers, in construction order, from a
    generator seeded ``seed``: the same numbers as building it right after ``torch.manual_seed(seed)``, without
    the process-wide generator. The mini table fits probes and ceilings in parallel threads of one process;
    through the shared generator one fit's seed and another's draws could interleave, and a fit's head would
    depend on what ran beside it (the supervised ViT's head did: it was built before any seed).

    A module with other layers that hold parameters (whose default init this does not draw) is refused:
    ValueError. Norm layers are allowed; their init is constant."""
    drawn, constant = (nn.Linear, nn.Conv2d), (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    other = sorted({type(m).__name__ for m in module.modules() if not isinstance(m, drawn + constant)
                    and any(True for _ in m.parameters(recurse=False))})
    if other:
        raise ValueError(f"seeded_init draws Linear and Conv2d layers only; {type(module).__name__} also holds "
                         f"{', '.join(other)}: build it after torch.manual_seed instead.")
    g = torch.Generator().manual_seed(int(seed))
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return module


def _fit(head: nn.Module, data: dict, *, epochs: int, lr: float, batch_size: int, seed: int, num_classes: int,
         forward=None, weight_decay: float = 0.0, group: int = 1) -> dict:
    """Train ``head`` with AdamW at a constant lr; return the best-validation head's test scores (without a
    ``"test"`` split in ``data``: the best validation score and epoch only).

    ``group``: consecutive samples that come from one scene (its tiles); the returned per-tile confusions
    are summed over each group, so they stay one per scene (the bootstrap's resampling unit)."""
    forward = forward or (lambda m, x, size: m(x, size))
    torch.manual_seed(seed)  # nothing below draws from it (the order comes from ``rng``); kept so the process-wide
    # generator ends as it always has (the online probe runs inside a pretraining)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    xtr, ytr = data["train"]
    best = (-1.0, -1, None)

    def predict(x):
        head.eval()
        with torch.no_grad():
            return torch.cat([forward(head, x[i:i + 256], ytr.shape[-2:]).argmax(1) for i in range(0, len(x), 256)])

    for epoch in range(epochs):
        head.train()
        order = torch.from_numpy(rng.permutation(len(xtr)))
        for s in range(0, len(xtr), batch_size):
            b = order[s:s + batch_size]
            loss = F.cross_entropy(forward(head, xtr[b], ytr.shape[-2:]), ytr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = mean_iou(tile_confusions(predict(data["val"][0]), data["val"][1], num_classes).sum(0))
        if val > best[0]:
            best = (val, epoch, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    if "test" not in data:  # a validation-only fit (the online probe): no test split to score
        return {"seed": seed, "val_miou": best[0], "best_epoch": best[1]}
    conf = tile_confusions(predict(data["test"][0]), data["test"][1], num_classes)
    conf = conf.reshape(-1, group, num_classes, num_classes).sum(1)
    return {"seed": seed, "val_miou": best[0], "best_epoch": best[1], "test_miou": mean_iou(conf.sum(0)),
            "tile_confusion": conf}


class _LinearHead(nn.Module):
    """``Linear(D, C)`` on patch tokens ``(B, g*g, D)`` -> bilinear logits ``(B, C, H, W)``."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor, size) -> torch.Tensor:
        B, N, _ = tokens.shape
        g = int(math.isqrt(N))
        logits = self.linear(tokens).transpose(1, 2).reshape(B, -1, g, g)
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


@torch.no_grad()
def encode(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Patch tokens ``(N, g*g, D)`` of a frozen timm ViT for normalised images ``(N, C, h, w)``."""
    from crossscale_kit.eval.features import patch_features

    model.eval()
    out = [patch_features(model, images[i:i + batch_size], None) for i in range(0, len(images), batch_size)]
    f = torch.cat(out)
    return f.reshape(f.shape[0], -1, f.shape[-1])


#: the paper's probe input resize: GEO-Bench's 64 px tiles are resized to the ViT's 224 px input
PAPER_RESIZE = 224 / 64
#: the authors' probe cuts each 256 px GEO-Bench image into 4 x 4 tiles of 64 px (``tiles_per_img 16``)
PAPER_TILES = 4


def resized(images: torch.Tensor, resize: float, patch: int) -> torch.Tensor:
    """``images (N, C, h, w)`` resized (bilinear) by ``resize`` to the nearest multiple of ``patch``; 1.0 keeps them."""
    if resize == 1.0:
        return images
    if not resize > 0:
        raise ValueError(f"resize must be > 0, got {resize!r}.")
    h, w = images.shape[-2:]
    size = tuple(max(patch, int(round(s * resize / patch)) * patch) for s in (h, w))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def to_tiles(x: torch.Tensor, per_side: int) -> torch.Tensor:
    """Cut images ``(N, C, h, w)`` or labels ``(N, h, w)`` into ``per_side x per_side`` tiles, scene-major:
    ``(N * per_side**2, [C,] h / per_side, w / per_side)`` (tile ``(i, j)`` of scene ``n`` at ``n * per_side**2 + i * per_side + j``)."""
    if per_side == 1:
        return x
    h, w = x.shape[-2:]
    if h % per_side or w % per_side:
        raise ValueError(f"a {h}x{w} tile does not cut into {per_side}x{per_side} tiles; pick tiles_per_side dividing it.")
    th, tw = h // per_side, w // per_side
    lead = x.shape[:-2]
    t = x.reshape(*lead, per_side, th, per_side, tw)
    n = lead[0]
    if len(lead) == 2:  # (N, C, t, th, t, tw) -> (N, t, t, C, th, tw)
        return t.permute(0, 2, 4, 1, 3, 5).reshape(n * per_side * per_side, lead[1], th, tw)
    return t.permute(0, 1, 3, 2, 4).reshape(n * per_side * per_side, th, tw)


def _patch_of(model: nn.Module) -> int:
    p = model.patch_embed.patch_size
    return int(p[0] if isinstance(p, (tuple, list)) else p)


HEAD_SEED_STRIDE = 1000  # head k of a probe of seed s is seeded s + 1000 k; head 0 is the single-head probe


def fit_heads(data: dict, *, heads: int, seed: int, num_classes: int, group: int, **fit) -> dict:
    """Fit ``heads`` linear heads on the same features, head ``k`` seeded ``seed + 1000 k`` (its init and batch
    order); head 0 is exactly the single-head probe. The test confusions are pooled (summed) over heads, so
    ``test_miou`` and the bootstrap read the heads' average; ``val_miou`` is their mean, ``best_epoch`` their
    median, and ``heads`` lists each head's own scores."""
    if int(heads) != heads or heads < 1:
        raise ValueError(f"heads must be a positive integer, got {heads!r}.")
    fits = []
    for k in range(int(heads)):
        s = seed + HEAD_SEED_STRIDE * k
        head = seeded_init(_LinearHead(data["train"][0].shape[-1], num_classes), s)
        fits.append(_fit(head, data, seed=s, num_classes=num_classes, group=group, **fit))
    conf = sum(f["tile_confusion"] for f in fits)
    return {"seed": seed, "val_miou": float(np.mean([f["val_miou"] for f in fits])),
            "best_epoch": int(np.median([f["best_epoch"] for f in fits])), "test_miou": mean_iou(conf.sum(0)),
            "tile_confusion": conf, "heads": [{k: v for k, v in f.items() if k != "tile_confusion"} for f in fits]}


def probe_encoder(export_dir: str | os.PathLike, task: MiniTask, *, seed: int, epochs: int = 60, lr: float = 1e-3,
                  batch_size: int = 64, resize: float = 1.0, tiles_per_side: int = 1, heads: int = 1,
                  cache_dir=None) -> dict:
    """Linear-probe one exported encoder on the task (see the module docstring).

    Args:
        resize: the MR tiles are resized (bilinear) by this factor before encoding, as the paper resizes
            its 64 px probe tiles to 224 px (:data:`PAPER_RESIZE`); the head's logits are upsampled to the
            label size either way.
        tiles_per_side: each scene is first cut into ``tiles_per_side x tiles_per_side`` tiles, each one
            sample of the probe, as the authors cut every 256 px GEO-Bench image into 4 x 4 tiles of 64 px
            before resizing them to 224 (:data:`PAPER_TILES`); scores and confusions stay per scene.
        heads: linear heads fitted on the same features and pooled (:func:`fit_heads`).

    Returns:
        ``{"seed", "val_miou", "test_miou", "best_epoch", "tile_confusion" (N_test, C, C), "heads"}``, mIoU in
        [0, 1]; the confusions are summed over the heads.
    """
    from crossscale_kit.encoders.export import load_exported_encoder

    model, meta = load_exported_encoder(export_dir)
    data = {}
    for split in ("train", "val", "test"):
        d = load_split(task, split, cache_dir)
        x = resized(to_tiles(normalise(d["mr"], meta.get("normalization")), tiles_per_side), resize, _patch_of(model))
        data[split] = (encode(model, x), to_tiles(torch.from_numpy(d["label"]).long(), tiles_per_side))
    data = standardise_features(data)
    return fit_heads(data, heads=heads, seed=seed, num_classes=task.num_classes, group=tiles_per_side ** 2,
                     epochs=epochs, lr=lr, batch_size=batch_size)


def standardise_features(data: dict) -> dict:
    """Features ``{split: (tokens (N, L, D), labels)}`` standardised per dimension with the training split's
    mean and std (MAE's linear probe does the same with a non-affine BatchNorm): a fixed linear map, so the
    probe stays linear, but plain AdamW converges in a few epochs whatever the scale of each dimension."""
    f = data["train"][0]
    mean, std = f.mean((0, 1)), f.std((0, 1)) + 1e-6
    return {k: ((x - mean) / std, y) for k, (x, y) in data.items()}


def _train_stats(task: MiniTask, cache_dir=None) -> dict:
    x = load_split(task, "train", cache_dir)["mr"].astype(np.float32)
    return {"mean": x.mean((0, 2, 3)).tolist(), "std": (x.std((0, 2, 3)) + 1e-6).tolist()}


def raw_pixel_probe(task: MiniTask, *, seed: int, epochs: int = 40, lr: float = 1e-3, batch_size: int = 16,
                    tiles_per_side: int = 1, heads: int = 1, cache_dir=None) -> dict:
    """The pixel floor: the same linear head on the raw MR pixels (one token per MR pixel, its C bands,
    normalised with the training split's statistics). Every encoder should beat it. Same output as
    :func:`probe_encoder`."""
    stats = _train_stats(task, cache_dir)
    data = {}
    for split in ("train", "val", "test"):
        d = load_split(task, split, cache_dir)
        x = to_tiles(normalise(d["mr"], stats), tiles_per_side)
        data[split] = (x.flatten(2).transpose(1, 2).contiguous(), to_tiles(torch.from_numpy(d["label"]).long(), tiles_per_side))
    return fit_heads(data, heads=heads, seed=seed, num_classes=task.num_classes, group=tiles_per_side ** 2,
                     epochs=epochs, lr=lr, batch_size=batch_size)


class _ViTSegmenter(nn.Module):
    """A timm ViT and the probe's linear head, trained end to end: ``(B, C, h, w) -> (B, classes, H, W)``."""

    def __init__(self, vit: nn.Module, num_classes: int, resize: float) -> None:
        super().__init__()
        self.vit, self.resize = vit, resize
        self.head = _LinearHead(vit.embed_dim, num_classes)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        x = resized(x, self.resize, _patch_of(self.vit))
        tokens = self.vit.forward_features(x)[:, getattr(self.vit, "num_prefix_tokens", 0):]
        return self.head(tokens, size)


def supervised_vit(export_dir: str | os.PathLike, task: MiniTask, *, seed: int, epochs: int = 15, lr: float = 1e-3,
                   batch_size: int = 16, resize: float = 1.0, tiles_per_side: int = 1, cache_dir=None) -> dict:
    """The fair ceiling: the probed ViT (the encoder exported in ``export_dir``, e.g. a host's random-init
    export: the same architecture, positions and initialisation as the floor) trained end to end with the probe's linear head and input resize on the
    labelled training tiles; best validation epoch scored on test (same output as :func:`probe_encoder`)."""
    from crossscale_kit.encoders.export import load_exported_encoder

    model, meta = load_exported_encoder(export_dir)
    model.pos_embed.requires_grad_(False)  # fixed sin-cos positions, as in pretraining
    stats = meta.get("normalization") or _train_stats(task, cache_dir)
    data = {}
    for split in ("train", "val", "test"):
        d = load_split(task, split, cache_dir)
        data[split] = (to_tiles(normalise(d["mr"], stats), tiles_per_side),
                       to_tiles(torch.from_numpy(d["label"]).long(), tiles_per_side))
    net = _ViTSegmenter(model, task.num_classes, resize)
    seeded_init(net.head, seed)  # the ViT's weights are the export's; its new head is drawn from the run's seed
    return _fit(net, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, num_classes=task.num_classes,
                weight_decay=0.05, group=tiles_per_side ** 2)


class SmallFCN(nn.Module):
    """The supervised ceiling: 4 dilated 3x3 conv blocks at full MR resolution, ``(B, 4, h, w) -> (B, C, h, w)``."""

    def __init__(self, in_chans: int = 4, num_classes: int = len(CLASSES), width: int = 16) -> None:
        super().__init__()
        layers, c = [], in_chans
        for d in (1, 2, 4, 1):
            layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor, size=None) -> torch.Tensor:
        return self.out(self.body(x))


def supervised_ceiling(task: MiniTask, *, seed: int, epochs: int = 15, lr: float = 3e-3, batch_size: int = 32,
                       cache_dir=None) -> dict:
    """Train :class:`SmallFCN` on the MR training tiles; best-validation model on test (same output as :func:`probe_encoder`)."""
    data = {}
    stats = None
    for split in ("train", "val", "test"):
        d = load_split(task, split, cache_dir)
        if stats is None:  # the training split's per-band statistics normalise every split
            x = d["mr"].astype(np.float32)
            stats = {"mean": x.mean((0, 2, 3)).tolist(), "std": (x.std((0, 2, 3)) + 1e-6).tolist()}
        data[split] = (normalise(d["mr"], stats), torch.from_numpy(d["label"]).long())
    return _fit(seeded_init(SmallFCN(num_classes=task.num_classes), seed), data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                num_classes=task.num_classes)


def clear_cache(task: MiniTask, cache_dir=None) -> None:
    """Remove a task's cached splits."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    shutil.rmtree(base / f"minitask-{task.fingerprint()}", ignore_errors=True)
