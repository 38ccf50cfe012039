"""The plain-timm snippet of docs/export.md runs as written on exports of any architecture (no timm_name needed)."""
import re

import pytest
import torch

from tests.data.fixtures import REPO

S2_MEAN = [443.89, 715.68, 813.27, 2603.59]
S2_STD = [283.97, 389.34, 651.25, 811.83]


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "export.md").read_text(), re.S)
    return next(b for b in blocks if "VisionTransformer(**meta" in b)


@pytest.mark.parametrize("cls", [True, False], ids=["latentmim_cls", "ijepa_no_cls"])
def test_plain_timm_snippet_runs_on_a_non_stock_export(tmp_path, cls):
    from crossscale_kit.encoders.export import export_encoder, load_exported_encoder
    from crossscale_kit.encoders.vit import ViTEncoder
    from crossscale_kit.io import BANDS

    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=64, depth=2, num_heads=2, class_token=cls)
    out = export_encoder(enc, tmp_path / "export", bands=list(BANDS), normalization={"mean": S2_MEAN, "std": S2_STD},
                         gsd=10.0, recipe=["gin/latentmim_sa.gin"], step=0)
    import json
    assert json.loads((out / "meta.json").read_text())["timm_name"] is None  # what broke the old snippet
    ns: dict = {}
    torch.manual_seed(1)
    exec(_snippet().replace("runs/quick/export", str(out)), ns)  # noqa: S102 - the docs' own code
    tokens, x = ns["tokens"], ns["x"]
    assert tokens.shape == (1, (32 // 8) ** 2, 64)
    model, meta = load_exported_encoder(out)
    with torch.no_grad():
        ref = model.forward_features(x)[:, meta["num_prefix_tokens"]:]
    torch.testing.assert_close(tokens.detach(), ref, rtol=1e-5, atol=1e-5)
