"""Console entry points (crossscale-*) work from an editable install into a fresh venv, beside ``python tools/x.py``,
and import the installed kit (this checkout, its folders kit/, kernels/, tools/ mapped to the ``crossscale_*`` import
names, subpackages included), not another copy."""
import subprocess
import sys

import pytest

from tests.data.fixtures import REPO

SCRIPTS = ["crossscale-train", "crossscale-shards", "crossscale-export", "crossscale-probe", "crossscale-report",
           "crossscale-cluster-map", "crossscale-experiments"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv (reusing this environment's torch & co. through --system-site-packages) with the kit installed
    editable, offline (--no-deps --no-build-isolation; --without-pip: the venv uses this environment's pip and setuptools)."""
    d = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(d)], check=True, timeout=120)
    r = subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "-e", str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def test_console_scripts_run_and_import_this_checkout(venv):
    py = str(venv / "bin" / "python")
    names = ("crossscale_kit", "crossscale_kernels", "crossscale_tools", "crossscale_kit.data.sources")
    where = subprocess.run([py, "-c", f"import importlib; [print(importlib.import_module(n).__file__) for n in {names}]"],
                           capture_output=True, text=True, timeout=120, cwd="/")
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(REPO / d / "__init__.py") for d in ("kit", "kernels", "tools", "kit/data/sources")]
    for name in SCRIPTS:
        r = subprocess.run([str(venv / "bin" / name), "--help"], capture_output=True, text=True, timeout=120, cwd="/")
        assert r.returncode == 0 and "usage:" in r.stdout, (name, r.stderr[-2000:])
    listed = subprocess.run([str(venv / "bin" / "crossscale-train"), "--list_configurables"], capture_output=True,
                            text=True, timeout=120, cwd="/")
    as_script = subprocess.run([sys.executable, "tools/train.py", "--list_configurables"], capture_output=True,
                               text=True, timeout=120, cwd=REPO)
    assert listed.returncode == 0 and as_script.returncode == 0
    assert listed.stdout == as_script.stdout and "SensorNormalize(" in listed.stdout
    bad = subprocess.run([str(venv / "bin" / "crossscale-export"), "--workdir", "/nonexistent-run"], capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
