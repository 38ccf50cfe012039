"""Result rows: atomic JSON and CSV writers shared by the probe and the report."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

from crossscale_kit.io import write_json_atomic
from crossscale_kit.io import write_text_atomic as _write_text


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically (:func:`crossscale_kit.io.write_text_atomic`), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text(path, text)
    return path


def write_csv_atomic(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as CSV (columns = union of keys in first-seen order; lists/dicts as JSON)."""
    rows = list(rows)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    return write_text_atomic(path, buf.getvalue())


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic JSON (creates the parent folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)
    return path
