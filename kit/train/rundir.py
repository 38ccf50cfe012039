"""One owner per run folder: a lock held for the run's life, and the fresh / resume / overwrite decision.

The lock is an exclusive ``flock`` on ``WORKDIR/.lock``, taken by rank 0. The kernel drops it when the
process ends in any way (exit, exception, SIGKILL), so a lock left by a dead process never blocks the
next run; the file records the owner (host, pid, start time) so a refusal names who holds the folder,
and a take-over after a crash is reported. The file itself is never deleted (deleting it would let two
processes lock two different files of the same name).
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from crossscale_kit.io import pid_alive, write_json_atomic
from crossscale_kit.train import checkpoint as ckpt

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
#: the run's record: written when a fresh run takes the folder, then holds what it trains on (identity)
RECORD_NAME = "run.json"
#: what makes a folder hold a run (besides checkpoints)
RUN_FILES = ("export", "summary.json", "logs/metrics.jsonl", RECORD_NAME)


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
        try:  # never through a link: a planted .lock -> some/file would have that file truncated
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise RunFolderError(
                f"{self.path} is a symbolic link (to {os.readlink(self.path)}); the run lock is never opened "
                f"through a link (its target would be overwritten). Remove {self.path} and run again.") from None
        if not os.path.samestat(os.fstat(fd), os.lstat(self.path)):  # swapped for a link after the open
            os.close(fd)
            raise RunFolderError(f"{self.path} changed while it was being opened; run again.")
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


def foreign_files(workdir: Path) -> list[str]:
    """Entries of ``workdir`` that no run of the kit wrote (a fresh run would overwrite some of them)."""
    if not workdir.is_dir():
        return []
    return sorted(p.name for p in workdir.iterdir() if p.name != LOCK_NAME)


def write_record(workdir: Path, **fields) -> None:
    """Write (or update) the run's record ``WORKDIR/run.json`` atomically, never through a link."""
    path = Path(workdir) / RECORD_NAME
    record = read_record(workdir)
    record.update(fields)
    write_json_atomic(path, record)


def read_record(workdir: Path) -> dict:
    """The run's record (``{}`` when there is none or it is unreadable)."""
    path = Path(workdir) / RECORD_NAME
    try:
        if path.is_symlink():
            return {}
        out = json.loads(path.read_text())
        return out if isinstance(out, dict) else {}
    except (OSError, ValueError):
        return {}


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
    if resume is True and not workdir.is_dir():  # refused before the lock would create the folder
        raise RunFolderError(
            f"--resume: the run folder {workdir} does not exist, so there is nothing to resume. Check --workdir (the "
            "folder of the run to continue), or start the run without --resume.")
    lock = RunLock(workdir).acquire()
    try:
        removed = ckpt.remove_temp_files(workdir)
        if removed:
            log.info("removed %d temp file(s) of interrupted saves: %s", len(removed), ", ".join(p.name for p in removed))
        has_ckpt = bool(ckpt.list_checkpoints(workdir))
        auto = resume == "auto"
        if auto:
            resume = has_ckpt
        elif resume and not has_ckpt:
            raise RunFolderError(
                f"--resume: {ckpt.checkpoint_dir(workdir)} holds no checkpoint to resume from. Start the run "
                "without --resume (or with --resume auto), or point --workdir at the run to continue.")
        if not resume and (found := holds_run(workdir)):
            if auto:  # a run killed before its first checkpoint: nothing to resume, start again (kept aside)
                log.warning("--resume auto: %s holds a run that was stopped before its first checkpoint (%s); "
                            "moved it to %s and starting fresh", workdir, ", ".join(found), move_aside(workdir))
            elif not overwrite:
                raise RunFolderError(
                    f"{workdir} already holds a run ({', '.join(found)}). Continue it with --resume, pick a new "
                    "--workdir, or pass --overwrite to move the old run aside (it is kept, not deleted).")
            else:
                log.warning("--overwrite: moved the earlier run in %s to %s", workdir, move_aside(workdir))
        elif not resume and (other := foreign_files(workdir)):
            if not overwrite:
                raise RunFolderError(
                    f"{workdir} is not empty and holds files that are not a run of this kit ({', '.join(other[:5])}"
                    f"{', ...' if len(other) > 5 else ''}); a run writes config.gin, logs/, checkpoints/, export/ "
                    "and summary.json there and would overwrite them. Pick an empty (or new) --workdir, or pass "
                    "--overwrite to move these files aside (kept, not deleted).")
            log.warning("--overwrite: moved the files in %s to %s", workdir, move_aside(workdir))
        if not resume:
            write_record(workdir, kit_run=1, created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        return Claim(lock=lock, resume=bool(resume))
    except BaseException:
        lock.release()
        raise
