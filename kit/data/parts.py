"""One shard set written as N parts side by side (``make_shards ... --part i/N``), published by ``make_shards merge``.

Making shards from thousands of scenes outgrows one machine. Part ``i`` of ``N`` (1-based) of a source is
the ``i``-th of ``N`` contiguous, disjoint blocks of the source's ordered work list (synthetic pair
indices, Sen2Venus index rows after the seeded shuffle, GeoTIFF tiles in row-major order), so N
processes, array jobs or nodes given the same command with only ``--part`` changed write every sample
exactly once. Each part is a complete shard set of its own, written atomically like any other, in
``OUT/part-<i>-of-<N>/``, its ``index.json`` holding a ``part`` record (the source, the command's options
and their hash, the normalisation it applied).

``merge(OUT)`` checks that all N parts are there and complete, agree (source, options, bands, scale,
GSDs, nodata rule, normalisation) and hold no sample twice, then publishes one set in ``OUT``: the parts'
shards, in part order and renumbered, are hard-linked (copied where links are impossible) into a staging
folder beside ``OUT``, ``index.json`` is written there last (temp file + rename), and the staged set is
renamed into place (the folder of parts, and a replaced set, moved aside and removed), as
:class:`crossscale_kit.data.writer.PairShardWriter` publishes a set. A reader never sees a half-merged set: it sees
the folder of parts (no shard set) or the whole merged one. The merged set holds exactly
the samples, in the same order, of one run of the same command without ``--part``; only the shard
boundaries differ.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

from crossscale_kit.io import pid_alive, write_json_atomic

PART_RE = re.compile(r"^part-(\d{4,})-of-(\d{4,})$")
#: index fields every part must share (besides the ``part`` record's source, options and normalisation)
SHARED_FIELDS = ("format", "bands", "scale", "mr_gsd", "hr_gsd", "nodata", "max_nodata_fraction")
#: options that do not change what is written (where it goes, how it is shown)
NEUTRAL_OPTIONS = ("source", "out", "part", "replace", "debug", "no_progress")


def parse_part(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``1 <= i <= N``; a ValueError names the bad value and the fix."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--part {text!r} is not of the form i/N; give the part number and the number of parts, "
                         "e.g. --part 1/3 (parts are numbered 1..N).")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--part {text}: the part number must lie in 1..N (N >= 1); use --part 1/{max(n, 1)} "
                         f"... --part {max(n, 1)}/{max(n, 1)}.")
    return i, n


def part_name(i: int, n: int) -> str:
    return f"part-{i:04d}-of-{n:04d}"


def part_folder(out: str | os.PathLike, part: tuple[int, int]) -> Path:
    """Where part ``(i, N)`` of the set ``out`` is written."""
    return Path(out) / part_name(*part)


def part_range(count: int, part: tuple[int, int] | None, what: str = "items") -> range:
    """The block of ``range(count)`` that part ``(i, N)`` owns (all of it for None); blocks differ by <= 1 item."""
    if part is None:
        return range(count)
    i, n = part
    if count < n:
        raise ValueError(f"--part {i}/{n}: the source has only {count} {what}, fewer than {n} parts; use at most "
                         f"{max(count, 1)} parts.")
    return range((i - 1) * count // n, i * count // n)


def options_record(source: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options that decide what is written, and their hash (parts of one set share it)."""
    kept = {k: v for k, v in sorted(options.items()) if k not in NEUTRAL_OPTIONS}
    text = json.dumps(kept, sort_keys=True, default=str)
    return {"source": source, "options": json.loads(text),
            "options_sha256": hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()}


def record_part(folder: str | os.PathLike, part: tuple[int, int], source: str, options: dict[str, Any],
                normalisation: dict[str, Any] | None = None) -> dict:
    """Add the ``part`` record to the index of a written part (atomically); return the index."""
    path = Path(folder) / "index.json"
    index = json.loads(path.read_text())
    index["part"] = {"index": part[0], "count": part[1], **options_record(source, options),
                     "normalisation": normalisation or {}}
    write_json_atomic(path, index)
    return index


# --------------------------------------------------------------------------------------------- merge
def _fix(out: Path, i: int, n: int) -> str:
    return (f"run the same make_shards command with --part {i}/{n} --out {out} (add --replace to rewrite it), "
            "then merge again")


def _find_parts(out: Path) -> tuple[int, dict[int, Path]]:
    if not out.is_dir():
        raise FileNotFoundError(f"--out {out} does not exist; write the parts first (make_shards <source> ... "
                                f"--out {out} --part i/N), then merge.")
    found: dict[int, dict[int, Path]] = {}
    for p in out.iterdir():
        m = PART_RE.match(p.name)
        if m and p.is_dir():
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        raise ValueError(f"{out} holds no parts (part-<i>-of-<N> folders); write them with make_shards <source> ... "
                         f"--out {out} --part i/N, then merge.")
    if len(found) > 1:
        counts = sorted(found)
        raise ValueError(f"{out} holds parts of different splits (N = {', '.join(map(str, counts))}); remove the "
                         f"folders of the wrong split (e.g. {out}/{part_name(1, counts[0])}) and merge again.")
    (n, parts), = found.items()
    return n, parts


def _check_shards(folder: Path, index: dict, label: str) -> list[str]:
    """The sample keys of a part, read from its tar headers; sizes must match its index."""
    keys: list[str] = []
    for shard in index.get("shards", []):
        path = folder / shard["name"]
        if not path.is_file() or ("size" in shard and path.stat().st_size != shard["size"]):
            raise ValueError(f"{label}: shard {path} is missing or not the size its index says; rewrite the part.")
        with tarfile.open(path) as tar:
            seen = dict.fromkeys(m.name.split(".", 1)[0] for m in tar.getmembers() if m.isfile())
        keys += list(seen)
    return keys


def _merge_stats(parts: list[dict]) -> dict:
    """Per-band statistics of the union from each part's ``{mean, std, min, max, count}``."""
    out = {}
    for band in dict.fromkeys(b for p in parts for b in p):
        rows = [p[band] for p in parts if band in p and p[band].get("count")]
        n = sum(r["count"] for r in rows)
        if not n:
            continue
        mean = sum(r["count"] * r["mean"] for r in rows) / n
        sq = sum(r["count"] * (r["std"] ** 2 + r["mean"] ** 2) for r in rows) / n
        out[band] = {"mean": mean, "std": math.sqrt(max(sq - mean * mean, 0.0)), "min": min(r["min"] for r in rows),
                     "max": max(r["max"] for r in rows), "count": n}
    return out


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # no hard links there
        shutil.copyfile(src, dst)


def merge(out: str | os.PathLike, *, replace: bool = False) -> dict:
    """Publish the parts in ``out`` as one shard set (see the module docstring); return its index.

    Raises:
        ValueError / FileNotFoundError: a missing, unfinished or disagreeing part, a sample in two parts,
            or a published set in ``out`` without ``replace`` — each naming the part and the fix.
    """
    out = Path(out)
    n, found = _find_parts(out)
    indexes: list[dict] = []
    for i in range(1, n + 1):
        folder, label = part_folder(out, (i, n)), f"part {i}/{n}"
        writing = [p for p in out.glob(f".{part_name(i, n)}.tmp-*") if p.name.rsplit("-", 1)[-1].isdigit()
                   and pid_alive(int(p.name.rsplit("-", 1)[-1]))]
        if i not in found or not (folder / "index.json").is_file():
            state = "is still being written" if writing else f"is missing (no {folder}/index.json)"
            raise ValueError(f"{label} {state}; " + ("wait for it to finish, then merge again." if writing
                                                     else _fix(out, i, n) + "."))
        index = json.loads((folder / "index.json").read_text())
        rec = index.get("part") or {}
        if (rec.get("index"), rec.get("count")) != (i, n):
            raise ValueError(f"{label}: {folder}/index.json has no part record for part {i}/{n} (the write did not "
                             f"finish); {_fix(out, i, n)}.")
        indexes.append(index)
    first = indexes[0]
    for i, index in enumerate(indexes[1:], start=2):
        rec, rec1 = index["part"], first["part"]
        checks = [("source", rec["source"], rec1["source"]),
                  ("options", rec["options_sha256"], rec1["options_sha256"]),
                  *((f, index.get(f), first.get(f)) for f in SHARED_FIELDS),
                  ("normalisation", rec.get("normalisation"), rec1.get("normalisation"))]
        for field, mine, theirs in checks:
            if mine != theirs:
                if field == "options":
                    diff = sorted(k for k in set(rec["options"]) | set(rec1["options"])
                                  if rec["options"].get(k) != rec1["options"].get(k))
                    mine, theirs = ({k: r["options"].get(k) for k in diff} for r in (rec, rec1))
                raise ValueError(f"part {i}/{n} disagrees with part 1/{n} on {field} ({mine} vs {theirs}); the parts "
                                 f"of one set come from one command with only --part changed: {_fix(out, i, n)}.")
    owner: dict[str, int] = {}
    for i, index in enumerate(indexes, start=1):
        for key in _check_shards(part_folder(out, (i, n)), index, f"part {i}/{n}"):
            if key in owner:
                raise ValueError(f"part {owner[key]}/{n} and part {i}/{n} both hold sample {key!r} (the parts overlap); "
                                 f"write every part with the same command and --part 1/{n} ... {n}/{n}, then merge.")
            owner[key] = i
    if not owner:
        raise ValueError(f"the {n} parts in {out} hold no sample (skipped: "
                         f"{dict(sum((Counter(ix.get('skipped', {})) for ix in indexes), Counter()))}); nothing to "
                         "publish. Check the source and its --max-nodata/--nodata, rewrite the parts, then merge.")
    if (out / "index.json").exists() and not replace:
        raise ValueError(f"{out} already holds a published shard set (index.json); pass --replace to publish the parts "
                         "in its place, or merge into another folder.")
    staging = out.parent / f".{out.name}.tmp-{os.getpid()}"  # beside OUT, as the shard writer stages a set
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        shards, number = [], 0
        for i, index in enumerate(indexes, start=1):
            for shard in index["shards"]:
                name = f"{shard['name'].rsplit('-', 1)[0]}-{number:06d}.tar"
                _link(part_folder(out, (i, n)) / shard["name"], staging / name)
                shards.append({**shard, "name": name})
                number += 1
        merged = {k: v for k, v in first.items() if k != "part"}
        merged.update(
            num_samples=sum(ix["num_samples"] for ix in indexes),
            nodata_pairs=sum(ix.get("nodata_pairs", 0) for ix in indexes),
            skipped=dict(sum((Counter(ix.get("skipped", {})) for ix in indexes), Counter())),
            shards=shards,
            parts={"count": n, "source": first["part"]["source"], "options": first["part"]["options"],
                   "options_sha256": first["part"]["options_sha256"],
                   "normalisation": first["part"].get("normalisation", {}),
                   "samples": [ix["num_samples"] for ix in indexes]},
        )
        if any("band_stats" in ix for ix in indexes):
            merged["band_stats"] = _merge_stats([ix.get("band_stats") or {} for ix in indexes])
        write_json_atomic(staging / "index.json", merged)  # last: the staged set is complete
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)  # OUT (the parts, and a replaced set) aside; the merged set in its place
        try:
            os.rename(staging, out)
        except OSError:
            os.rename(old, out)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return merged
