"""One owner per run folder: a lock held for the run's life, and the fresh / resume / overwrite decision.

The lock is an exclusive ``flock`` on ``WORKDIR/.lock``, taken by rank 0. The kernel drops it when the
process ends in any way (exit, exception, SIGKILL), so a lock left by a dead process never blocks the
next run; the file records the owner (host, pid, start time) so a refusal names who holds the folder,
and a take-over after a crash is reported. The file itself is never deleted (deleting it would let two
processes lock two different files of the same name).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from kit.io import pid_alive
from kit.train import checkpoint as ckpt

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
#: what makes a folder hold a run (besides checkpoints)
RUN_FILES = ("export", "summary.json", "logs/metrics.jsonl")


class RunFolderError(ValueError):
    """The run folder cannot be used as asked; the message says what to do instead."""


class RunLock:
    """Exclusive ownership of a run folder.

    Args:
        workdir: the run folder (created if missing).

    Raises (from :meth:`acquire`):
        RunFolderError naming the process that holds the folder.
    """

    def __init__(self, workdir: str | os.PathLike) -> None:
        self.path = Path(workdir) / LOCK_NAME
        self._fd: int | None = None

    def owner(self) -> dict:
        """The owner recorded in the lock file (``{}`` if none or unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            o = self.owner()
            who = f"pid {o.get('pid', '?')} on {o.get('host', '?')}, started {o.get('started', '?')}"
            raise RunFolderError(
                f"{self.path.parent} is in use by another run ({who}). Wait for it to end, or pick another "
                "--workdir.") from None
        previous = self.owner()
        if previous.get("state") == "running":
            same_host = previous.get("host") == socket.gethostname()
            gone = "is no longer running" if same_host and not pid_alive(int(previous.get("pid", 0))) else "ended"
            log.warning("stale lock in %s: its owner (pid %s on %s) %s without releasing it; taking over",
                        self.path.parent, previous.get("pid"), previous.get("host"), gone)
        self._fd = fd
        self._write("running")
        return self

    def _write(self, state: str) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "state": state,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self._write("released")
        except OSError:  # a full disk must not hide the real error
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


@dataclass
class Claim:
    """The outcome of :func:`claim`: the held lock and whether the run resumes."""

    lock: RunLock
    resume: bool


def holds_run(workdir: Path) -> list[str]:
    """What in ``workdir`` belongs to an earlier run (empty: the folder is free for a fresh run)."""
    found = [f"checkpoints up to step {c[-1][0]}" for c in [ckpt.list_checkpoints(workdir)] if c]
    found += [name for name in RUN_FILES if (workdir / name).exists()]
    return found


def move_aside(workdir: Path) -> Path:
    """Move everything of an earlier run (not the lock) into a sibling ``WORKDIR.old-<time>`` folder."""
    base = f"{workdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    dest, n = workdir.with_name(base), 1
    while dest.exists():
        dest, n = workdir.with_name(f"{base}-{n}"), n + 1
    dest.mkdir(parents=True)
    for entry in workdir.iterdir():
        if entry.name != LOCK_NAME:
            os.replace(entry, dest / entry.name)
    return dest


def claim(workdir: str | os.PathLike, *, resume: bool | str, overwrite: bool = False) -> Claim:
    """Take the run folder and decide how the run starts.

    Args:
        workdir: the run folder.
        resume: ``True`` (resume; an error if the folder has no checkpoint), ``"auto"`` (resume when the
            folder has a checkpoint, else start fresh) or ``False`` (fresh; refused if the folder holds a run).
        overwrite: with a fresh start, move an earlier run aside (never deleted) instead of refusing.

    Raises:
        RunFolderError (and releases the lock) when the folder is busy or cannot be used as asked.
    """
    workdir = Path(workdir)
    if resume not in (True, False, "auto"):
        raise RunFolderError(f"resume must be True, False or 'auto', got {resume!r}.")
    if overwrite and resume:
        raise RunFolderError("--overwrite starts a fresh run and --resume continues one; pass only one of them.")
    lock = RunLock(workdir).acquire()
    try:
        removed = ckpt.remove_temp_files(workdir)
        if removed:
            log.info("removed %d temp file(s) of interrupted saves: %s", len(removed), ", ".join(p.name for p in removed))
        has_ckpt = bool(ckpt.list_checkpoints(workdir))
        if resume == "auto":
            resume = has_ckpt
        elif resume and not has_ckpt:
            raise RunFolderError(
                f"--resume: {ckpt.checkpoint_dir(workdir)} holds no checkpoint to resume from. Start the run "
                "without --resume (or with --resume auto), or point --workdir at the run to continue.")
        if not resume and (found := holds_run(workdir)):
            if not overwrite:
                raise RunFolderError(
                    f"{workdir} already holds a run ({', '.join(found)}). Continue it with --resume, pick a new "
                    "--workdir, or pass --overwrite to move the old run aside (it is kept, not deleted).")
            log.warning("--overwrite: moved the earlier run in %s to %s", workdir, move_aside(workdir))
        return Claim(lock=lock, resume=bool(resume))
    except BaseException:
        lock.release()
        raise
