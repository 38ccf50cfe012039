"""Export and load a trained student encoder as a timm state dict.

``WORKDIR/export/encoder.safetensors`` holds the encoder's timm ``VisionTransformer`` state dict with timm
key names; ``WORKDIR/export/meta.json`` holds what a user needs to rebuild and feed it::

    {"architecture": "ViT patch 16, width 384, depth 12, 6 heads, 4 input bands",
     "timm_class": "timm.models.vision_transformer.VisionTransformer", "timm_kwargs": {...},
     "timm_name": "vit_small_patch16_224" (or null when no timm model name has this architecture),
     "bands": ["blue", ...], "normalization": {"mean": [...], "std": [...]}, "gsd": 10.0, "patch_size": 16,
     "img_size": 224, "embed_dim": 384, "recipe": ["gin/latentmim_sa.gin", ...], "step": 1234,
     "pos_embed": "sincos-2d-fixed", "pos_spacing": "integer"}

Rebuild it with ``VisionTransformer(**meta["timm_kwargs"])`` and ``load_state_dict(..., strict=True)``, or
simply :func:`load_exported_encoder`. Positions: training adds the fixed 2-D sin-cos table *computed for the
input's grid*; the stored ``pos_embed`` is that table at the nominal grid, and plain timm would interpolate
it bicubically at any other input size, which gives different features (relative difference about 0.5 at
2x). :func:`use_sincos_positions` makes a timm model recompute the table per grid as training does;
:func:`load_exported_encoder` applies it, so exported features equal the training wrapper's at every size.
``meta["pos_spacing"]`` says where the table is evaluated: ``"integer"`` (row/column ``k = 0 .. g-1``, the
kit's default) or ``"stretched"`` (``k * g / (g - 1)``, LatentMIM's released encoder,
``ViTEncoder.stretch_positions``); :func:`load_exported_encoder` rebuilds the table with that spacing on
every grid. The stored ``pos_embed`` is the table of the nominal grid with the same spacing, so plain timm
is exact at the training size either way. A LatentMIM encoder carries a CLS token first (``meta["num_prefix_tokens"]`` 1): the patch features are
``forward_features(x)[:, meta["num_prefix_tokens"]:]``; ``global_pool="avg"`` averages the patch tokens only.
"""
from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

from crossscale_kit.encoders.pos_embed import sincos_2d
from crossscale_kit.io import _refuse_link, temp_path, write_json_atomic

TIMM_CLASS = "timm.models.vision_transformer.VisionTransformer"
# timm model names the kit's encoders can carry -> (patch, width, depth, heads) they stand for
_TIMM_NAMES = {"vit_tiny_patch16_224": (16, 192, 12, 3), "vit_small_patch16_224": (16, 384, 12, 6),
               "vit_base_patch16_224": (16, 768, 12, 12), "vit_large_patch16_224": (16, 1024, 24, 16)}


def describe_architecture(timm_kwargs: dict) -> str:
    """A one-line name of the architecture the kwargs build, e.g. ``ViT patch 8, width 128, depth 2, 2 heads``."""
    k = timm_kwargs
    return (f"ViT patch {k['patch_size']}, width {k['embed_dim']}, depth {k['depth']}, {k['num_heads']} heads, "
            f"{k.get('in_chans', 3)} input bands")


def timm_name_for(timm_name: str | None, timm_kwargs: dict) -> str | None:
    """``timm_name`` when that timm model is the architecture the kwargs build, else None (no misleading name)."""
    k = timm_kwargs
    spec = (k.get("patch_size"), k.get("embed_dim"), k.get("depth"), k.get("num_heads"))
    return timm_name if _TIMM_NAMES.get(timm_name) == spec else None


def build_timm_vit(timm_kwargs: dict) -> VisionTransformer:
    """The plain timm ``VisionTransformer`` that an export's ``timm_kwargs`` describe (random weights)."""
    return VisionTransformer(**timm_kwargs)


def _sincos_pos_embed(self: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """timm's ``_pos_embed`` with the fixed sin-cos table computed for the input's grid (as in training),
    at the spacing ``self.kit_pos_spacing`` (``"integer"`` or ``"stretched"``)."""
    if x.dim() != 4:  # not dynamic_img_size: tokens already flat, the stored table is the right one
        return VisionTransformer._pos_embed(self, x)
    B, H, W, C = x.shape
    stretch = getattr(self, "kit_pos_spacing", "integer") == "stretched"
    table = sincos_2d(H, W, C, stretch=stretch).to(device=x.device, dtype=x.dtype)[None]
    x = x.reshape(B, H * W, C)
    prefix = []
    if self.cls_token is not None:
        prefix.append(self.cls_token.expand(B, -1, -1))
    if getattr(self, "reg_token", None) is not None:
        prefix.append(self.reg_token.expand(B, -1, -1))
    x = x + table
    if prefix:
        p = torch.cat(prefix, dim=1)
        if not self.no_embed_class:  # the stored table has slots for the prefix tokens: keep them
            p = p + self.pos_embed[:, : p.shape[1]]
        x = torch.cat([p, x], dim=1)
    return self.pos_drop(x)


POS_SPACINGS = ("integer", "stretched")


def use_sincos_positions(model: VisionTransformer, spacing: str = "integer") -> VisionTransformer:
    """Make a timm ViT add the fixed 2-D sin-cos table of each input's own grid, as the kit's training does.

    Args:
        spacing: ``"integer"`` (positions ``k``) or ``"stretched"`` (``k * g / (g - 1)``): the export's
            ``meta["pos_spacing"]``.

    Needs ``dynamic_img_size=True`` (the kit's exports have it). Returns the same model.
    """
    if spacing not in POS_SPACINGS:
        raise ValueError(f"unknown position spacing {spacing!r}; choose one of {POS_SPACINGS}.")
    model.kit_pos_spacing = spacing
    model._pos_embed = types.MethodType(_sincos_pos_embed, model)
    return model


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def export_encoder(encoder, out_dir: str | os.PathLike, **meta: Any) -> Path:
    """Write ``encoder.safetensors`` and ``meta.json`` for a :class:`crossscale_kit.encoders.vit.ViTEncoder`.

    Args:
        encoder: the student ``ViTEncoder``.
        out_dir: folder to write (created).
        **meta: extra fields (bands, normalization, gsd, recipe, step ...).
    """
    spec = encoder.export_spec()
    state = encoder.get_submodule(spec["module"]).state_dict()
    meta = {"pos_spacing": spec.get("pos_spacing", "integer"), **meta}
    return write_export(state, spec["timm_name"], spec["timm_kwargs"], out_dir, **meta)


def write_export(state: dict, timm_name: str, timm_kwargs: dict, out_dir: str | os.PathLike, **meta: Any) -> Path:
    """Write a timm state dict as ``encoder.safetensors`` and its rebuild recipe as ``meta.json``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    target = out / "encoder.safetensors"
    if target.is_symlink():
        raise _refuse_link(target)
    tmp = temp_path(target)
    save_file(tensors, str(tmp))
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates its file 0600; a shared export follows the umask
    os.replace(tmp, target)
    info = {
        "architecture": describe_architecture(timm_kwargs),
        "timm_class": TIMM_CLASS,
        "timm_name": timm_name_for(timm_name, timm_kwargs),
        "timm_kwargs": dict(timm_kwargs),
        "patch_size": timm_kwargs["patch_size"],
        "img_size": timm_kwargs["img_size"],
        "embed_dim": timm_kwargs["embed_dim"],
        "in_chans": timm_kwargs["in_chans"],
        "pos_embed": "sincos-2d-fixed",
        "pos_spacing": "integer",  # "stretched": k * g / (g - 1) (LatentMIM as released); meta may override
        "num_prefix_tokens": int(bool(timm_kwargs.get("class_token"))),  # patch features: forward_features(x)[:, n:]
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
    model = build_timm_vit(desc["timm_kwargs"])
    try:  # the export must load strictly into the timm model its meta.json describes
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the checkpoint's encoder weights under {prefix!r} do not fit "
                         f"{describe_architecture(desc['timm_kwargs'])}: {exc}") from None
    return write_export(state, desc["timm_name"], desc["timm_kwargs"], out_dir, **desc["meta"],
                        step=int(checkpoint["step"]))


def meta_contradiction(meta: dict) -> str | None:
    """What makes an export's ``meta.json`` disagree with itself, or None.

    The encoder's input bands (``bands``) must be as many as its ``in_chans``, the order its
    ``normalization`` statistics are in, and the order the shard set it trained on fed them
    (``data["band_order_fed"]`` when the reader remapped the stored order, else ``data["bands"]``, the
    stored order); ``normalization``'s mean and std hold one value per band.
    """
    bands = meta.get("bands")
    if not bands:
        return None
    bands = list(bands)
    in_chans = (meta.get("timm_kwargs") or {}).get("in_chans", meta.get("in_chans"))
    if isinstance(in_chans, int) and in_chans != len(bands):
        return f"the encoder takes {in_chans} input bands (timm_kwargs.in_chans) but bands lists {len(bands)}: {bands}"
    norm = meta.get("normalization") or {}
    if isinstance(norm, dict):
        if norm.get("bands") and list(norm["bands"]) != bands:
            return f"the encoder takes bands {bands} but its normalisation is for {list(norm['bands'])}"
        for k in ("mean", "std"):
            if isinstance(norm.get(k), list) and len(norm[k]) != len(bands):
                return f"normalization.{k} holds {len(norm[k])} values for the {len(bands)} bands {bands}"
    data = meta.get("data") or {}
    if isinstance(data, dict) and data.get("bands"):
        fed = list(data.get("band_order_fed") or data["bands"])
        if fed != bands:
            return (f"the encoder takes bands {bands} but the shard set it trained on (index_sha256 "
                    f"{str(data.get('index_sha256'))[:12]}...) fed them as {fed}")
    return None


def load_exported_encoder(export_dir: str | os.PathLike, device: str | torch.device = "cpu", *,
                          training_positions: bool = True):
    """Rebuild an exported encoder as a plain timm model.

    Args:
        export_dir: folder with ``encoder.safetensors`` and ``meta.json``.
        training_positions: recompute the sin-cos table per input grid at the spacing ``meta["pos_spacing"]``
            records (:func:`use_sincos_positions`; exports without it are ``"integer"``), so
            features equal training's at every input size; False keeps timm's interpolation of the stored table.

    Returns:
        ``(model, meta)``: the timm ``VisionTransformer`` in eval mode and the meta dict.

    Raises:
        FileNotFoundError naming the missing file and how it is made.
    """
    d = Path(export_dir)
    if d.is_file():
        raise NotADirectoryError(f"{d} is a file, not an export folder; pass the folder that holds "
                                 "encoder.safetensors and meta.json (e.g. runs/NAME/export).")
    for name in ("encoder.safetensors", "meta.json"):
        if not (d / name).is_file():
            raise FileNotFoundError(
                f"{d / name} is missing; an export folder is written by tools/train.py at WORKDIR/export "
                "(or tools/export.py from a checkpoint)."
            )
    fix = "re-export it (tools/export.py --workdir RUN, or --checkpoint CKPT --out DIR)"
    try:
        meta = json.loads((d / "meta.json").read_text())
        if not isinstance(meta, dict) or "timm_kwargs" not in meta:
            raise ValueError("it has no 'timm_kwargs'")
        model = build_timm_vit(meta["timm_kwargs"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{d / 'meta.json'} is not an export description ({exc}); {fix}.") from None
    problem = meta_contradiction(meta)
    if problem:
        raise ValueError(f"{d / 'meta.json'} contradicts itself: {problem}; {fix}.")
    try:
        state = load_file(str(d / "encoder.safetensors"))
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"{d / 'encoder.safetensors'} cannot be loaded as the encoder meta.json describes "
                         f"({type(exc).__name__}: {first}); {fix}.") from None
    if training_positions and meta.get("pos_embed", "sincos-2d-fixed") == "sincos-2d-fixed":
        use_sincos_positions(model, meta.get("pos_spacing", "integer"))
    return model.to(device).eval(), meta
