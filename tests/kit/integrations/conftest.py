import pytest
import torch

S2_MEAN = [443.89, 715.68, 813.27, 2603.59]
S2_STD = [283.97, 389.34, 651.25, 811.83]


@pytest.fixture(scope="module", params=[True, False], ids=["cls_stretched", "nocls_integer"])
def export_dir(request, tmp_path_factory):
    """A tiny export (patch 8, 32 px, width 64, depth 3): LatentMIM-like (CLS token, stretched positions) or I-JEPA-like."""
    from crossscale_kit.encoders.export import export_encoder
    from crossscale_kit.encoders.vit import ViTEncoder
    from crossscale_kit.io import BANDS

    torch.manual_seed(0)
    cls = request.param
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=64, depth=3, num_heads=2, class_token=cls,
                     stretch_positions=cls)
    return export_encoder(enc, tmp_path_factory.mktemp("export"), bands=list(BANDS),
                          normalization={"mean": S2_MEAN, "std": S2_STD}, gsd=10.0, recipe=["gin/latentmim_sa.gin"], step=0)
