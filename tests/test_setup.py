"""setup.py installs what the kit imports and nothing it does not; no patch-level ceiling on torch; the folders install
under unique import names; triton is the GPU path only."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# distribution name -> import name where they differ
IMPORT_NAME = {"gin-config": "gin", "scikit-learn": "sklearn", "tensorboard": "torch.utils.tensorboard"}


def _setup_kwargs() -> dict:
    """The keyword arguments setup.py passes to ``setup()`` (run with ``setup`` replaced; nothing is built)."""
    import runpy
    from unittest import mock

    got = {}
    with mock.patch("setuptools.setup", lambda **kw: got.update(kw)):
        runpy.run_path(str(REPO / "setup.py"))
    return got


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


def test_every_folder_installs_under_a_unique_import_name():
    """kit/, kernels/, tools/ (and every subpackage) install as crossscale_*: no top-level kit, kernels (Hugging
    Face's kernel hub has that name) or tools in an environment the kit is installed into."""
    kw = _setup_kwargs()
    folders = {"kit": "crossscale_kit", "kernels": "crossscale_kernels", "tools": "crossscale_tools"}
    assert kw["package_dir"] == {new: old for old, new in folders.items()}
    want = {folders[init.parent.relative_to(REPO).parts[0]] + "".join(f".{p}" for p in init.parent.relative_to(REPO).parts[1:])
            for d in folders for init in (REPO / d).rglob("__init__.py")}
    assert set(kw["packages"]) == want
    assert all(p.startswith("crossscale_") for p in kw["packages"]), kw["packages"]


def test_triton_is_the_gpu_extra_and_the_kit_never_imports_it():
    """A CPU install (no extras) has no triton: only kernels/gram's Triton layers import it, behind
    ``crossscale_kernels.HAS_TRITON``; the [gpu] and [test] extras bring it."""
    kw = _setup_kwargs()
    assert not any(r.startswith("triton") for r in kw["install_requires"])
    assert "triton" in kw["extras_require"]["gpu"] and "triton" in kw["extras_require"]["test"]
    for path in [*(REPO / "kit").rglob("*.py"), *(REPO / "tools").rglob("*.py")]:
        assert not re.search(r"^\s*(import|from) triton\b", path.read_text(), re.M), f"{path} imports triton"


def test_the_build_keeps_the_checkout_off_sys_path():
    """pyproject.toml names setuptools' standard backend: the legacy one puts the checkout on sys.path during the
    build, and its kernels/ folder then shadows Hugging Face's kernels, whose egg_info writer every build loads."""
    backend = re.findall(r'^build-backend\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert backend == ["setuptools.build_meta"], backend
