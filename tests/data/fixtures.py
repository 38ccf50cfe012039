"""Session fixtures over the fake-data makers, imported by the conftests of tests/kit/eval and tests/tools.

``tiny_encoder`` is the encoder the probe and cluster-map tests use; a project-wide fixture (e.g. a
briefly trained encoder) can replace it by overriding this fixture name in a higher conftest.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    from tests.data import make_encoder

    return make_encoder.make(tmp_path_factory.mktemp("enc") / "ijepa_sa", seed=0, recipe="gin/ijepa_sa.gin")


@pytest.fixture(scope="session")
def tiny_encoder_b(tmp_path_factory) -> Path:
    from tests.data import make_encoder

    return make_encoder.make(tmp_path_factory.mktemp("enc") / "ijepa_mr", seed=1, recipe="gin/ijepa_mr.gin")


@pytest.fixture(scope="session")
def geobench_root(tmp_path_factory) -> Path:
    """Parent folder holding fake m-cashew-plant and m-SA-crop-type task folders."""
    from tests.data import make_geobench

    root = tmp_path_factory.mktemp("geobench")
    make_geobench.make(root, "m-cashew-plant", seed=0)
    make_geobench.make(root, "m-SA-crop-type", seed=1)
    return root


@pytest.fixture(scope="session")
def mados_root(tmp_path_factory) -> Path:
    from tests.data import make_mados

    return make_mados.make(tmp_path_factory.mktemp("mados"))


@pytest.fixture(scope="session")
def geotiff_pair(tmp_path_factory) -> dict:
    from tests.data import make_geotiff_pair

    return make_geotiff_pair.make(tmp_path_factory.mktemp("geotiff"))


@pytest.fixture(scope="session")
def sen2venus_fake(tmp_path_factory) -> dict:
    from tests.data import make_sen2venus

    return make_sen2venus.make(tmp_path_factory.mktemp("s2v"))


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
