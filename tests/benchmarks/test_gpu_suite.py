"""``benchmarks/gpu_suite.sh`` is meant to run unattended on a GPU machine: check here what can be
checked without one -- it parses, it calls only scripts that exist, and the flags it always passes to
the gram benchmark are flags that script accepts."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_the_suite_parses():
    proc = subprocess.run(["bash", "-n", str(SUITE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_python_script_it_calls_exists():
    text = SUITE.read_text()
    scripts = set(re.findall(r"benchmarks/[\w/]+\.py", text))
    assert {"benchmarks/gram_kernel.py", "benchmarks/train_step.py", "benchmarks/data_pipeline.py"} <= scripts
    missing = sorted(s for s in scripts if not (ROOT / s).is_file())
    assert not missing, f"gpu_suite.sh calls scripts that do not exist: {missing}"


def test_it_is_strict_time_limited_and_writes_under_out():
    text = SUITE.read_text()
    assert "set -euo pipefail" in text
    assert 'OUT="${OUT:-benchmarks/results}"' in text
    assert "timeout " in text
    limits = [int(v) for v in re.findall(r"^[A-Z]+_LIMIT=(\d+)$", text, flags=re.M)]
    assert len(limits) == 4 and sum(limits) <= 9 * 60, limits


def test_the_gram_flags_it_passes_are_accepted():
    help_text = subprocess.run([sys.executable, "benchmarks/gram_kernel.py", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=300).stdout
    for flag in ("--shapes", "--dtypes", "--out", "--crossover"):
        assert flag in SUITE.read_text() and flag in help_text, flag
