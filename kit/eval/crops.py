"""Random-resized crop of image and mask together: the probe's per-epoch training augmentation.

The paper's authors draw, every epoch and for every training tile, one crop box with torchvision's
``RandomResizedCrop`` rule (area fraction ``scale`` 0.3-1, aspect ``ratio`` 3/4-4/3, ten tries then the
largest centred box of an allowed ratio), resize the image crop bilinearly and the mask crop with nearest
neighbour to the model input. This is that rule written with torch ops and an explicit generator, so a
probe seed and epoch fix every box.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def crop_box(height: int, width: int, generator: torch.Generator, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """One box ``(top, left, h, w)`` inside a ``height x width`` image (torchvision's RandomResizedCrop rule)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height  # fallback: centre crop of the whole image at the nearest allowed ratio
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(images: torch.Tensor, labels: torch.Tensor, size: int, generator: torch.Generator,
                        scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Crop each image and its mask with its own box and resize both to ``size``.

    Args:
        images: ``(B, C, H, W)`` float. labels: ``(B, H, W)`` integer masks of the same size.
        size: output side. generator: draws the boxes.

    Returns:
        ``(images (B, C, size, size), labels (B, size, size) int64, boxes [(top, left, h, w)] * B)``;
        images bilinear (align_corners False), masks nearest neighbour.
    """
    if images.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"image {tuple(images.shape)} and mask {tuple(labels.shape)} sizes differ.")
    H, W = images.shape[-2:]
    out_i, out_l, boxes = [], [], []
    for b in range(images.shape[0]):
        t, l, h, w = crop_box(H, W, generator, scale, ratio)
        boxes.append((t, l, h, w))
        img = images[b:b + 1, :, t:t + h, l:l + w]
        lab = labels[b:b + 1, None, t:t + h, l:l + w].float()
        out_i.append(F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False))
        out_l.append(F.interpolate(lab, size=(size, size), mode="nearest")[:, 0])
    return torch.cat(out_i), torch.cat(out_l).long(), boxes


def resize_pair(images: torch.Tensor, labels: torch.Tensor, size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain resize for val/test: image bilinear, mask nearest; ``None`` keeps the size."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images, labels.long()
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    return images, labels
