"""Small I/O pieces shared by data, encoders and eval: band names and atomic file writes.

Every package that writes a file another process may read (shard indexes, export meta, probe rows)
writes it through a temporary file in the same folder and ``os.replace``, so a reader sees the old
file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: band names of the 4-band stacks the kit trains on, in storage order (Sentinel-2 B2 B3 B4 B8)
BANDS = ("blue", "green", "red", "nir")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2))


class CorruptSampleError(ValueError):
    """A sample file exists but cannot be read as its format promises (readers count or raise it)."""
