"""Red team, run folders: a run never overwrites what it does not own, and never writes through a link."""
from __future__ import annotations

import json
import os

from tests.redteam.helpers import assert_user_error, train


def test_fresh_run_in_a_folder_of_user_files_is_refused_and_leaves_them(tmp_path):
    w = tmp_path / "mine"
    (w / "logs").mkdir(parents=True)
    (w / "config.gin").write_text("# my notes\n")
    (w / "logs" / "metrics.csv").write_text("step,loss\n1,0.5\n")
    p = train(w, "--max_steps", "1")
    assert_user_error(p, str(w), "config.gin", "--workdir", "--overwrite")
    assert (w / "config.gin").read_text() == "# my notes\n"
    assert (w / "logs" / "metrics.csv").read_text() == "step,loss\n1,0.5\n"
    assert not (w / "checkpoints").exists()


def test_overwrite_moves_user_files_aside_never_deletes(tmp_path):
    w = tmp_path / "mine"
    w.mkdir()
    (w / "config.gin").write_text("# my notes\n")
    p = train(w, "--max_steps", "1", "--overwrite")
    assert p.returncode == 0, p.stderr[-2000:]
    aside = [d for d in tmp_path.iterdir() if d.name.startswith("mine.old-")]
    assert len(aside) == 1 and (aside[0] / "config.gin").read_text() == "# my notes\n"


def test_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    w = tmp_path / "run"
    w.mkdir()
    (w / ".lock").symlink_to(victim)
    p = train(w, "--max_steps", "1")
    assert_user_error(p, str(w / ".lock"), "symbolic link", "Remove")
    assert victim.read_text() == "keep me"


def test_planted_log_symlink_in_a_resumed_run_is_refused(tmp_path):
    w = tmp_path / "run"
    assert train(w, "--max_steps", "3").returncode == 0
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (w / "logs" / "metrics.csv").unlink()
    (w / "logs" / "metrics.csv").symlink_to(victim)
    p = train(w, "--max_steps", "1", "--resume")
    assert_user_error(p, "metrics.csv", "symbolic link")
    assert victim.read_text() == "keep me"


def test_planted_figure_symlink_is_replaced_not_written_through(tmp_path):
    w = tmp_path / "run"
    assert train(w, "--max_steps", "3").returncode == 0
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (w / "logs" / "loss_curves.png").unlink()
    (w / "logs" / "loss_curves.png").symlink_to(victim)
    p = train(w, "--max_steps", "1", "--resume")
    assert p.returncode == 0, p.stderr[-2000:]
    assert victim.read_text() == "keep me" and not (w / "logs" / "loss_curves.png").is_symlink()


def test_resume_auto_after_a_kill_before_the_first_checkpoint_starts_fresh(tmp_path):
    w = tmp_path / "run"
    assert train(w, "--max_steps", "1").returncode == 0  # a run that left logs but (as if killed) no checkpoint
    for p in (w / "checkpoints").iterdir():
        p.unlink()
    (w / "export").rename(tmp_path / "gone")
    (w / "summary.json").unlink()
    p = train(w, "--max_steps", "1", "--resume", "auto")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "starting fresh" in p.stderr
    assert [json.loads(r)["step"] for r in (w / "logs" / "metrics.jsonl").read_text().splitlines()] == [1]
    assert any(d.name.startswith("run.old-") for d in tmp_path.iterdir())


def test_exported_encoder_is_readable_as_the_umask_says(tmp_path):
    w = tmp_path / "run"
    assert train(w, "--max_steps", "1").returncode == 0
    mode = (w / "export" / "encoder.safetensors").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044 or mode == 0o666 & ~_umask(), oct(mode)


def test_every_file_a_user_shares_follows_the_umask(tmp_path):
    """Under umask 002 (a group-shared project folder) exports, checkpoints, logs and shards are 664."""
    from tests.redteam.helpers import cli

    old = os.umask(0o002)
    try:
        assert cli("make_shards", "synthetic", "--out", tmp_path / "s", "--num-pairs", "24", "--mr-size", "32",
                   "--shard-size", "8", "--no-progress").returncode == 0
        p = train(tmp_path / "run", "--max_steps", "3", root=tmp_path / "s")
        assert p.returncode == 0, p.stderr[-2000:]
    finally:
        os.umask(old)
    files = [f for f in (tmp_path / "run").rglob("*") if f.is_file() and f.name != ".lock"]
    files += [f for f in (tmp_path / "s").iterdir() if f.is_file()]
    names = {f.name for f in files}
    assert {"encoder.safetensors", "meta.json", "ckpt-00000003.pt", "index.json", "pairs-000000.tar"} <= names
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files if f.stat().st_mode & 0o777 != 0o664} == {}


def _umask() -> int:
    import os

    m = os.umask(0o022)
    os.umask(m)
    return m


def test_a_fresh_run_that_fails_to_start_can_be_run_again(tmp_path):
    # 3 shards for 1 x 4 readers: the stream refuses after the folder was claimed
    root = tmp_path / "shards"
    from tests.redteam.helpers import cli

    assert cli("make_shards", "synthetic", "--out", root, "--num-pairs", "24", "--mr-size", "32", "--shard-size", "8",
               "--no-progress").returncode == 0
    w = tmp_path / "run"
    for _ in range(2):  # the second try gets the same error, not "already holds a run"
        p = train(w, "--max_steps", "1", "--gin_param", "PairedTiles.num_workers = 4", root=root)
        assert_user_error(p, "readers", "num_workers")
