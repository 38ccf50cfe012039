"""Export and load a trained student encoder as a timm state dict.

``WORKDIR/export/encoder.safetensors`` holds ``encoder.vit.state_dict()`` with timm key names;
``WORKDIR/export/meta.json`` holds what a user needs to rebuild and feed it::

    {"timm_name": "vit_small_patch16_224", "timm_kwargs": {...}, "bands": ["blue", ...],
     "normalization": {"mean": [...], "std": [...]}, "gsd": 10.0, "patch_size": 16, "img_size": 224,
     "embed_dim": 384, "recipe": ["gin/latentmim_sa.gin", ...], "step": 1234, "pos_embed": "sincos-2d-fixed"}

``timm.create_model(meta["timm_name"], **meta["timm_kwargs"])`` then ``load_state_dict(..., strict=True)``
rebuilds it; ``model.forward_features(x)`` gives ``(B, N, D)`` patch features equal to the training wrapper's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file

from kit.io import write_json_atomic


def export_encoder(encoder, out_dir: str | os.PathLike, **meta: Any) -> Path:
    """Write ``encoder.safetensors`` and ``meta.json`` for a :class:`kit.encoders.vit.ViTEncoder`.

    Args:
        encoder: the student ``ViTEncoder``.
        out_dir: folder to write (created).
        **meta: extra fields (bands, normalization, gsd, recipe, step ...).
    """
    spec = encoder.export_spec()
    state = encoder.get_submodule(spec["module"]).state_dict()
    return write_export(state, spec["timm_name"], spec["timm_kwargs"], out_dir, **meta)


def write_export(state: dict, timm_name: str, timm_kwargs: dict, out_dir: str | os.PathLike, **meta: Any) -> Path:
    """Write a timm state dict as ``encoder.safetensors`` and its rebuild recipe as ``meta.json``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    tmp = out / f".encoder.safetensors.tmp{os.getpid()}"
    save_file(tensors, str(tmp))
    os.replace(tmp, out / "encoder.safetensors")
    info = {
        "timm_name": timm_name,
        "timm_kwargs": dict(timm_kwargs),
        "patch_size": timm_kwargs["patch_size"],
        "img_size": timm_kwargs["img_size"],
        "embed_dim": timm_kwargs["embed_dim"],
        "in_chans": timm_kwargs["in_chans"],
        "pos_embed": "sincos-2d-fixed",
    }
    info.update(meta)
    write_json_atomic(out / "meta.json", info)
    return out


def export_from_checkpoint(checkpoint: dict, out_dir: str | os.PathLike) -> Path:
    """Write the export of the student encoder held in a training checkpoint (see ``tools/export.py``).

    Args:
        checkpoint: a ``ckpt-*.pt`` loaded with ``torch.load``; it carries ``checkpoint["export"]`` =
            ``{"prefix", "timm_name", "timm_kwargs", "meta"}`` next to the model state.
        out_dir: folder for ``encoder.safetensors`` and ``meta.json``.

    Raises:
        ValueError if the checkpoint has no export description (written by an older kit) or its
        encoder weights do not load strictly into the described timm model.
    """
    desc = checkpoint.get("export")
    if not desc:
        raise ValueError("this checkpoint carries no 'export' description; re-save it with the current kit.")
    prefix = desc["prefix"]
    state = {k[len(prefix):]: v for k, v in checkpoint["model"].items() if k.startswith(prefix)}
    model = timm.create_model(desc["timm_name"], pretrained=False, **desc["timm_kwargs"])
    try:  # the export must load strictly into the timm model its meta.json describes
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the checkpoint's encoder weights under {prefix!r} do not fit {desc['timm_name']}: {exc}") from None
    return write_export(state, desc["timm_name"], desc["timm_kwargs"], out_dir, **desc["meta"],
                        step=int(checkpoint["step"]))


def load_exported_encoder(export_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild an exported encoder as a plain timm model.

    Returns:
        ``(model, meta)``: the timm ``VisionTransformer`` in eval mode and the meta dict.

    Raises:
        FileNotFoundError naming the missing file and how it is made.
    """
    d = Path(export_dir)
    for name in ("encoder.safetensors", "meta.json"):
        if not (d / name).is_file():
            raise FileNotFoundError(
                f"{d / name} is missing; an export folder is written by tools/train.py at WORKDIR/export "
                "(or tools/export.py from a checkpoint)."
            )
    meta = json.loads((d / "meta.json").read_text())
    model = timm.create_model(meta["timm_name"], pretrained=False, **meta["timm_kwargs"])
    model.load_state_dict(load_file(str(d / "encoder.safetensors")), strict=True)
    return model.to(device).eval(), meta
