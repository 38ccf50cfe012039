"""MAE + spatial affinity under torchrun --nproc_per_node=2 (gloo, CPU): both ranks end with the same weights.

MAE keeps no EMA target, so the add-on's own HR teacher and the rank-consistent masks are what this
exercises beyond the LatentMIM run of test_distributed.py.
"""
import json
import os
import subprocess
import sys

import pytest

from crossscale_kit.train.config import REPO_ROOT
from tests.kit.train.helpers import losses
from tests.kit.train.test_distributed import _bindings, _shards


@pytest.mark.timeout(600)
def test_torchrun_two_ranks_mae_sa_stay_identical(tmp_path):
    shards = _shards(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    ddp = tmp_path / "ddp"
    args = ["--gin", "gin/mae_sa.gin", "--gin", "gin/presets/test_tiny.gin", "--max_steps", "3"]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         "tools/train.py", *args, *_bindings(shards), "--workdir", str(ddp)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2
    sums = summary["rank_param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1], "ranks hold different weights"
    rows = losses(ddp)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss/gram"] > 0 for r in rows)
