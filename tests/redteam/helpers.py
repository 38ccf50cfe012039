"""Run the kit's tools as a user does: a subprocess on the command line, real files, the exit code and stderr."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = ["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin"]


def cli(tool: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, f"tools/{tool}.py", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def train(workdir, *args, root=None) -> subprocess.CompletedProcess:
    extra = ["--gin_param", f"PairedTiles.root = '{root}'"] if root else []
    return cli("train", *TINY, "--workdir", workdir, *extra, *args)


def assert_user_error(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, no traceback, one ``error:`` line that holds every word (path, fix)."""
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    err = [line for line in p.stderr.splitlines() if re.match(r"^([\w.]+ \w+: )?error: ", line)]
    assert len(err) == 1, p.stderr[-3000:]
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]
