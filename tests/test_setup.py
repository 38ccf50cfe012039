"""setup.py installs what the kit imports and nothing it does not; no patch-level ceiling on torch."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# distribution name -> import name where they differ
IMPORT_NAME = {"gin-config": "gin", "scikit-learn": "sklearn", "tensorboard": "torch.utils.tensorboard"}


def _requires():
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    reqs = next(k.value for k in call.keywords if k.arg == "install_requires")
    return [ast.literal_eval(e) for e in reqs.elts]


def test_every_install_requirement_is_imported_and_torch_has_no_ceiling():
    sources = "\n".join(p.read_text() for d in ("kit", "kernels", "tools") for p in (REPO / d).rglob("*.py"))
    for req in _requires():
        dist = re.split(r"[<>=!~ ]", req)[0]
        mod = IMPORT_NAME.get(dist, dist)
        assert re.search(rf"^\s*(import|from) {re.escape(mod)}\b", sources, re.M), f"{dist} is installed but never imported"
    torch = next(r for r in _requires() if r.startswith("torch"))
    assert "<" not in torch, f"no upper bound on torch: {torch}"
