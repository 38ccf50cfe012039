"""Encoders: the timm ViT wrapper that encodes patch subsets, its projection head, export."""
from crossscale_kit.encoders.projection_head import ProjectionHead
from crossscale_kit.encoders.vit import ViTEncoder

__all__ = ["ViTEncoder", "ProjectionHead"]
