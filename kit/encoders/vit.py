"""ViT encoder that encodes a subset of patch indices, wrapping timm.

The same weights run at the MR grid and at the ``s``-times larger HR grid: position embeddings are
fixed 2-D sin-cos tables computed for whatever grid the input has (I-JEPA / MAE convention), so an HR
teacher built from the student needs no position interpolation. The wrapped timm model keeps its
native key names, so ``encoder.vit.state_dict()`` loads strictly into
``timm.create_model(name, in_chans=4, num_classes=0, class_token=False, global_pool="avg",
dynamic_img_size=True)``; its ``pos_embed`` parameter holds the sin-cos table of the nominal grid.
With ``class_token=True`` (LatentMIM as released) the timm model is built with ``class_token=True,
no_embed_class=True``: the CLS token carries no position, and ``forward_features`` returns it first.
"""
from __future__ import annotations

import gin
import timm
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from crossscale_kit.encoders.init import xavier_init_
from crossscale_kit.encoders.pos_embed import sincos_2d, sincos_2d_on

# timm architecture names -> (embed_dim, depth, num_heads)
ARCHS = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
}


@gin.register
class ViTEncoder(nn.Module):
    """timm ViT that encodes only the given patches.

    Args:
        arch: ``vit_tiny``, ``vit_small``, ``vit_base`` or ``vit_large`` (the timm family); ``embed_dim``,
            ``depth`` and ``num_heads`` override its numbers (for tiny test models).
        patch_size: patch side in pixels.
        img_size: nominal input side (the MR model input); inputs of any multiple of ``patch_size`` work.
        in_chans: input bands (4: blue, green, red, NIR).
        drop_path_rate: stochastic depth.
        class_token: prepend a learned CLS token to every pass (LatentMIM as released; I-JEPA has none).
            It has no position; ``forward`` returns it first only with ``keep_prefix=True``.
        stretch_positions: evaluate the sin-cos table at ``k * g / (g - 1)`` on every grid (the MR grid and
            the HR teacher's alike), as LatentMIM's released encoder does; False (the kit's default): integer
            ``k``. The export records the spacing (``meta.json`` ``"pos_spacing"``) and
            :func:`crossscale_kit.encoders.export.load_exported_encoder` rebuilds the same table per input grid.
        init: weight initialisation. ``"timm"``: timm's ViT init. ``"ijepa"``: timm's (which equals
            I-JEPA's for every Linear and LayerNorm) plus the patch-embedding conv at trunc_normal(0.02)
            with zero bias, as I-JEPA's release starts it. ``"latentmim"``: every Linear and the
            patch embedding xavier-uniform with zero bias, CLS N(0, 0.02), as LatentMIM's release.
        init_std: the std of the ``"ijepa"`` scheme's patch-embedding conv (the release's ``init_std``,
            0.02). Its output std is ``init_std * sqrt(C p^2)``: at the paper's I-JEPA patches (4 x 14 x 14)
            about 0.56, beside sin-cos positions of std 0.71; a miniature model with 4 x 4 x 4 patches needs
            ``0.02 * sqrt(784 / 64) = 0.07`` for the same balance of content and position.

    Shapes:
        ``forward(x (B, C, H, W), idx (B, K) | None) -> (B, K, D)``; ``idx`` is row-major over the
        ``(H/p, W/p)`` grid; ``None`` encodes all ``N = H W / p^2`` patches in order. With a CLS token
        it joins the pass and ``forward(x, idx, keep_prefix=True)`` returns ``(B, 1 + K, D)``, CLS first.
    """

    def __init__(
        self,
        arch: str = "vit_small",
        patch_size: int = 16,
        img_size: int = 224,
        in_chans: int = 4,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        class_token: bool = False,
        init: str = "timm",
        stretch_positions: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}.")
        if img_size % patch_size:
            raise ValueError(
                f"img_size {img_size} is not divisible by patch_size {patch_size}; pick an image size that is "
                f"a multiple of the patch size (e.g. {img_size // patch_size * patch_size or patch_size})."
            )
        d, dep, heads = ARCHS[arch]
        self.embed_dim = embed_dim or d
        depth = depth or dep
        num_heads = num_heads or heads
        if self.embed_dim % num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {num_heads}.")
        if init not in ("timm", "ijepa", "latentmim"):
            raise ValueError(f"unknown init {init!r}; choose 'timm', 'ijepa' or 'latentmim'.")
        self.arch, self.patch_size, self.img_size, self.in_chans = arch, patch_size, img_size, in_chans
        self.stretch_positions = bool(stretch_positions)
        if not init_std > 0:
            raise ValueError(f"ViTEncoder.init_std must be > 0, got {init_std!r}.")
        self.init_std = float(init_std)
        self.timm_kwargs = dict(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=self.embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=0,
            class_token=bool(class_token),
            no_embed_class=bool(class_token),  # the CLS token gets no position (LatentMIM's is zero)
            global_pool="avg",
            fc_norm=False,  # keep the final LayerNorm on the tokens (timm moves it after pooling otherwise)
            dynamic_img_size=True,
        )
        self.vit = timm.create_model(
            f"{arch}_patch16_224",
            pretrained=False,
            drop_path_rate=drop_path_rate,
            **self.timm_kwargs,
        )
        grid = img_size // patch_size
        with torch.no_grad():
            self.vit.pos_embed.copy_(sincos_2d(grid, grid, self.embed_dim, stretch=self.stretch_positions)[None])
        self.vit.pos_embed.requires_grad_(False)
        self._init_weights(init)

    @torch.no_grad()
    def _init_weights(self, scheme: str) -> None:
        conv = self.vit.patch_embed.proj
        if scheme == "ijepa":
            nn.init.trunc_normal_(conv.weight, std=self.init_std)
            nn.init.zeros_(conv.bias)
        elif scheme == "latentmim":
            xavier_init_(self.vit)
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))  # as a Linear on patch pixels
            nn.init.zeros_(conv.bias)
            if self.vit.cls_token is not None:
                nn.init.normal_(self.vit.cls_token, std=0.02)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches in a ``keep_prefix`` output: 1 with a CLS token, else 0."""
        return 0 if self.vit.cls_token is None else 1

    @property
    def timm_name(self) -> str:
        return f"{self.arch}_patch16_224"

    def export_spec(self) -> dict:
        """How this encoder is exported: ``{"timm_name", "timm_kwargs", "module"}``.

        ``timm.create_model(timm_name, **timm_kwargs)`` rebuilds it as a plain timm model, and the state
        dict of the submodule named ``module`` (relative to this encoder) loads strictly into that model.
        ``"pos_spacing"`` (``"integer"`` or ``"stretched"``) is the sin-cos table's spacing, recorded in the
        export's ``meta.json``. Only strings, numbers and plain containers, so a checkpoint can carry it.
        """
        return {"timm_name": self.timm_name, "timm_kwargs": dict(self.timm_kwargs), "module": "vit",
                "pos_spacing": "stretched" if self.stretch_positions else "integer"}

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid ``(H/p, W/p)`` of an input, with a clear error if it does not tile."""
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"input {height}x{width} is not divisible by the patch size {p}; resize or crop to a multiple of {p}."
            )
        return height // p, width // p

    def pos_embed(self, gh: int, gw: int, device: torch.device) -> torch.Tensor:
        """``(gh*gw, D)`` fixed sin-cos table for a grid (stretched or integer spacing), cached per grid and device."""
        return sincos_2d_on(gh, gw, self.embed_dim, device, stretch=self.stretch_positions)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel patches ``(B, C, H, W) -> (B, N, C*p*p)``, row-major over the grid, ``(c, i, j)`` inside a
        patch: the layout of the patch-embedding weights (and of MAE's pixel targets)."""
        p = self.patch_size
        self.grid_size(x.shape[-2], x.shape[-1])
        return rearrange(x, "b c (h i) (w j) -> b (h w) (c i j)", i=p, j=p)

    def embed(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Patch embedding plus positions, before the blocks: ``(B, C, H, W) -> (B, N, D)``, or ``(B, K, D)``
        for the patches ``idx`` ``(B, K)``.

        With ``idx`` only the chosen pixel patches are embedded: they are gathered first and the
        patch-embedding convolution (kernel = stride = p) is applied as the equal linear map to them, so
        an encoder that sees K of N patches does K/N of the embedding work (the HR teacher of spatial
        affinity sees 4 per MR patch). Indices are checked where they are drawn (the samplers); a
        device read here would stall the GPU every step.
        """
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"encoder expects (B, {self.in_chans}, H, W) images, got {tuple(x.shape)}; check the band selection."
            )
        gh, gw = self.grid_size(x.shape[-2], x.shape[-1])
        pos = self.pos_embed(gh, gw, x.device)
        patch_embed = self.vit.patch_embed
        if idx is None:
            tokens = rearrange(patch_embed(x), "b h w d -> b (h w) d")  # NHWC out with dynamic_img_size
            return tokens + pos.to(tokens.dtype)
        if idx.dim() != 2 or idx.shape[0] != x.shape[0]:
            raise ValueError(f"idx must be (B, K) with B = {x.shape[0]}, got {tuple(idx.shape)}.")
        p = self.patch_size
        grid = rearrange(x, "b c (h i) (w j) -> b h w c i j", i=p, j=p)  # a view: nothing copied yet
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        patches = grid[rows, torch.div(idx, gw, rounding_mode="floor"), idx % gw]  # (B, K, C, p, p): chosen only
        patches = rearrange(patches, "b k c i j -> b k (c i j)")
        proj = patch_embed.proj
        tokens = patch_embed.norm(F.linear(patches, proj.weight.flatten(1), proj.bias))
        return tokens + pos[idx].to(tokens.dtype)

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None, keep_prefix: bool = False) -> torch.Tensor:
        tokens = self.embed(x, idx)
        p = self.num_prefix_tokens
        if p:  # the CLS token joins the pass without a position
            tokens = torch.cat([self.vit.cls_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1), tokens], dim=1)
        out = self.encode_tokens(tokens)
        return out if keep_prefix else out[:, p:]

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the transformer blocks and final norm on already embedded tokens ``(B, K, D)``."""
        vit = self.vit
        tokens = vit.norm_pre(vit.pos_drop(tokens))
        tokens = vit.blocks(tokens)
        return vit.norm(tokens)
