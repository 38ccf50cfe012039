"""Where a shard set lives: a local folder, ``http(s)://``, ``s3://``, ``gs://`` or a ``pipe:`` command.

A shard root is a string. Objects under it (the shards, ``index.json``) are named by :func:`join`:

- a local folder (or ``file://``): the file beside the others, opened with Python's ``open`` and a
  ``READ_BUFFER`` read-ahead buffer (today's local speed);
- ``http(s)://``, ``s3://``, ``gs://``: the URL ``root/name``, opened through fsspec (``s3fs`` and
  ``gcsfs`` are the optional extras ``[s3]`` / ``[gcs]``; plain HTTP uses fsspec's own ``aiohttp`` client).
  S3 endpoint and credentials come from the usual AWS variables (``AWS_ENDPOINT_URL``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` ...) or from ``storage_options`` (the
  gin binding ``PairedTiles.storage_options``, passed to fsspec as given);
- ``pipe:CMD``: webdataset's ``pipe:`` opener (``wds.gopen``) on ``CMD`` with ``{}`` replaced by the name,
  or ``/name`` appended when ``CMD`` holds no ``{}``: ``pipe:curl -sf https://host/set`` and
  ``pipe:aws s3 cp s3://bucket/set/{} -`` both work.

A remote shard is read by :class:`ReadAhead`: a thread fetches ``chunk``-byte blocks ahead of the tar
expansion (``depth`` of them), and a connection dropped mid-object is re-opened at the byte where it broke,
at most ``retries`` times (each retry logged), before the read fails with a message naming the URL.
Errors a user can fix (endpoint unreachable, bucket or object missing, access denied, a missing fsspec
backend) become :class:`~crossscale_kit.data.errors.DataError` with one line naming the URL and the fix
(:func:`explain`).
"""
from __future__ import annotations

import io
import logging
import os
import queue
import threading
import time
from typing import Any, Callable
from urllib.parse import urlparse

from crossscale_kit.data.errors import DataError

log = logging.getLogger(__name__)

#: URL schemes read through fsspec, and the pip extra each needs
REMOTE = {"http": "http", "https": "http", "s3": "s3", "gs": "gcs", "gcs": "gcs"}
READ_BUFFER = 256 * 1024  # bytes of the local read-ahead buffer (see crossscale_kit.data.reader.tar_samples)
CHUNK = 4 * 1024 * 1024  # bytes of one remote read (one ranged GET on S3/GCS)
DEPTH = 4  # remote chunks read ahead per open shard
RETRIES = 3  # re-opens of a dropped remote connection per shard
BACKOFF_S = 0.2  # first pause before a retry (doubles each time)


def scheme(root: str | os.PathLike) -> str:
    """``""`` for a local path, else the URL scheme (``"pipe"``, ``"s3"``, ``"https"`` ...)."""
    text = os.fspath(root)
    if text.startswith("pipe:"):
        return "pipe"
    s = urlparse(text).scheme.lower()
    return "" if s in ("", "file") or len(s) == 1 else s  # "C:\\..." is a drive letter, not a scheme


def is_local(root: str | os.PathLike) -> bool:
    return scheme(root) == ""


def local_path(root: str | os.PathLike) -> str:
    """The filesystem path of a local root (``file://`` stripped, ``~`` expanded)."""
    text = os.fspath(root)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return os.path.expanduser(text)


def check_root(root: str) -> None:
    """Refuse a URL scheme the kit cannot read, naming the ones it can."""
    s = scheme(root)
    if s not in ("", "pipe") and s not in REMOTE:
        raise DataError(f"shard root {root!r}: unsupported scheme {s!r}; use a local folder, http(s)://, s3://, "
                        f"gs:// or pipe:COMMAND.")


def join(root: str | os.PathLike, name: str) -> str:
    """The object ``name`` (a shard or ``index.json``) under ``root``, as a path or URL."""
    text = os.fspath(root)
    s = scheme(text)
    if s == "":
        return os.path.join(local_path(text), name)
    if s == "pipe":
        return text.replace("{}", name) if "{}" in text else f"{text.rstrip('/')}/{name}"
    return f"{text.rstrip('/')}/{name}"


def _fs(url: str, storage_options: dict | None):
    """``(filesystem, path)`` of a remote URL through fsspec, with the AWS endpoint variables honoured."""
    import fsspec

    options = dict(storage_options or {})
    s = scheme(url)
    if s == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        client = dict(options.get("client_kwargs") or {})
        if endpoint and "endpoint_url" not in client and "endpoint_url" not in options:
            client["endpoint_url"] = endpoint
        if client:
            options["client_kwargs"] = client
        # botocore's default retries (with backoff) make an unreachable endpoint take ~10 s to report;
        # a dropped read is retried by ReadAhead instead
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", {"max_attempts": 2, "mode": "standard"})
        config.setdefault("connect_timeout", 10)
        options["config_kwargs"] = config
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        extra = REMOTE.get(s)
        pkg = {"s3": "s3fs", "gcs": "gcsfs"}.get(extra or "", "aiohttp")
        hint = f"pip install 'crossscale-kit[{extra}]' (or pip install {pkg})"
        raise DataError(f"reading {url} needs the fsspec backend {pkg} ({e}); {hint}.") from None
    if not any(fs is k for k in _KEEP):
        # held for the life of the process: a forked DataLoader worker drops fsspec's instance cache, and a
        # dropped s3fs/aiohttp instance of the parent would try to close its session on the parent's loop
        _KEEP.append(fs)
    return fs, path


_KEEP: list = []


def missing(url: str, storage_options: dict | None = None) -> str:
    """Why the object ``url`` is absent, in words: its bucket does not exist, or no such object."""
    if scheme(url) in ("s3", "gs", "gcs"):
        fs, path = _fs(url, storage_options)
        bucket = path.split("/", 1)[0]
        try:
            if not fs.exists(bucket):
                return f"bucket {bucket!r} does not exist"
        except Exception:  # noqa: BLE001 - the object's absence is the message then
            pass
    return "no such object"


def explain(url: str, exc: BaseException) -> str:
    """One line naming ``url``, what went wrong reading it and what to do."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 200:
        text = text[:200] + "..."
    name = type(exc).__name__
    creds = "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or PairedTiles.storage_options)"
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text or "NoSuchKey" in text or " 404" in text:
        what = "bucket does not exist" if "bucket" in text.lower() else "no such object"
        return (f"cannot read {url}: {what} ({text}); check the URL in PairedTiles.root (bucket and prefix) and that "
                f"the set was written there (python tools/make_shards.py ... --out URL).")
    if isinstance(exc, PermissionError) or any(k in text for k in ("AccessDenied", "InvalidAccessKeyId",
                                                                    "SignatureDoesNotMatch", " 403")):
        return f"cannot read {url}: access denied ({text}); {creds}."
    return (f"cannot read {url}: endpoint unreachable or connection failed ({name}: {text}); check the host and "
            f"port of the URL (AWS_ENDPOINT_URL for s3://) and that the server is up.")


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    """The whole object ``url`` (a local path, a URL or a ``pipe:`` command).

    Raises:
        FileNotFoundError: a local file is missing (the caller words the message).
        DataError: a remote object cannot be read, with :func:`explain`'s one line.
    """
    s = scheme(url)
    if s == "":
        with open(local_path(url), "rb") as f:
            return f.read()
    try:
        if s == "pipe":
            import webdataset as wds

            with wds.gopen(url, "rb") as f:
                return f.read()
        fs, path = _fs(url, storage_options)
        return fs.cat_file(path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure of a remote read is the user's to fix: one line
        raise DataError(explain(url, e)) from None


def write_json(root: str | os.PathLike, name: str, obj: Any, storage_options: dict | None = None) -> None:
    """Write ``obj`` as indented JSON to ``root/name``: atomically in a folder, one PUT in an object store."""
    import json

    url = join(root, name)
    if is_local(root):
        from crossscale_kit.io import write_json_atomic

        write_json_atomic(url, obj)
        return
    fs, path = _fs(url, storage_options)
    fs.pipe_file(path, json.dumps(obj, indent=2, default=str).encode())


def exists(url: str, storage_options: dict | None = None) -> bool:
    """Whether the object ``url`` exists (a ``pipe:`` command is taken to exist)."""
    s = scheme(url)
    if s == "":
        return os.path.exists(local_path(url))
    if s == "pipe":
        return True
    fs, path = _fs(url, storage_options)
    try:
        return bool(fs.exists(path))
    except Exception as e:  # noqa: BLE001
        raise DataError(explain(url, e)) from None


def size(url: str, storage_options: dict | None = None) -> int | None:
    """The size in bytes of the object ``url``; None where it cannot be known up front (``pipe:``)."""
    s = scheme(url)
    if s == "":
        return os.stat(local_path(url)).st_size
    if s == "pipe":
        return None
    fs, path = _fs(url, storage_options)
    try:
        info = fs.info(path)
    except Exception as e:  # noqa: BLE001
        raise DataError(explain(url, e)) from None
    return None if info.get("size") is None else int(info["size"])


def open_shard(url: str, storage_options: dict | None = None, *, buffer: int = READ_BUFFER, chunk: int = CHUNK,
               depth: int = DEPTH, retries: int = RETRIES) -> io.BufferedReader:
    """A binary stream over one shard: a buffered local file, webdataset's ``pipe:`` opener, or a
    :class:`ReadAhead` over fsspec for a URL."""
    s = scheme(url)
    if s == "":
        return open(local_path(url), "rb", buffering=buffer)
    if s == "pipe":
        import webdataset as wds

        return wds.gopen(url, "rb", bufsize=buffer)
    fs, path = _fs(url, storage_options)
    if s in ("http", "https"):
        # one streamed GET: works with servers without range requests (Python's http.server); a retry
        # re-requests the object and skips what was read
        def open_at(pos: int):
            f = fs.open(path, "rb", block_size=0)
            _skip(f, pos)
            return f
    else:
        def open_at(pos: int):
            f = fs.open(path, "rb", block_size=chunk, cache_type="none")
            f.seek(pos)
            return f
    return io.BufferedReader(ReadAhead(url, open_at, chunk=chunk, depth=depth, retries=retries), buffer)


def _skip(f, n: int) -> None:
    while n > 0:
        got = len(f.read(min(n, CHUNK)))
        if not got:
            raise EOFError(f"the object ended after {n} fewer bytes than were read before")
        n -= got


_FATAL = (FileNotFoundError, PermissionError, IsADirectoryError, ImportError, DataError)


class ReadAhead(io.RawIOBase):
    """A read-only stream that a background thread fills ``depth`` chunks ahead of the reader.

    Args:
        url: named in the log and the errors.
        open_at: ``open_at(pos)`` opens the object positioned at byte ``pos``.
        chunk: bytes per read of the underlying stream.
        depth: chunks held ahead.
        retries: re-opens after a failed read (a dropped connection) before the error reaches the reader,
            with a pause of ``BACKOFF_S * 2**k``; a missing object or a refused access is not retried.
    """

    def __init__(self, url: str, open_at: Callable[[int], Any], *, chunk: int = CHUNK, depth: int = DEPTH,
                 retries: int = RETRIES) -> None:
        super().__init__()
        self.url, self._open_at, self._chunk, self._retries = url, open_at, chunk, retries
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._done = False
        self.retried = 0
        self._thread = threading.Thread(target=self._run, name=f"readahead {url}", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        pos, f = 0, None
        try:
            while not self._stop.is_set():
                try:
                    if f is None:
                        f = self._open_at(pos)
                    data = f.read(self._chunk)
                except Exception as e:  # noqa: BLE001 - sorted below: retried, or handed to the reader
                    if f is not None:
                        try:
                            f.close()
                        except Exception:  # noqa: BLE001 - a broken connection may not close cleanly
                            pass
                        f = None
                    if isinstance(e, _FATAL):
                        self._put(DataError(explain(self.url, e)))
                        return
                    if self.retried >= self._retries:
                        self._put(OSError(f"connection to {self.url} failed at byte {pos} after {self.retried} "
                                          f"retries ({type(e).__name__}: {e}); check the network and the server, "
                                          f"or re-run (resume is exact)"))
                        return
                    self.retried += 1
                    log.warning("connection to %s dropped at byte %d (%s: %s); retry %d of %d", self.url, pos,
                                type(e).__name__, e, self.retried, self._retries)
                    time.sleep(BACKOFF_S * 2 ** (self.retried - 1))
                    continue
                if not data:
                    self._put(b"")
                    return
                pos += len(data)
                if not self._put(bytes(data)):
                    return
        finally:
            if f is not None:
                try:
                    f.close()
                except Exception:  # noqa: BLE001
                    pass

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if not self._buf:
            if self._done:
                return 0
            item = self._q.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        super().close()

    def __repr__(self) -> str:  # named in webdataset's tar errors ("name='...'")
        return f"<ReadAhead name='{self.url}'>"
