#!/usr/bin/env python
"""Collect probe rows into the layout of the paper's Tables I-IV (markdown + CSV), paper numbers beside ours.

Example::

    python tools/report.py results/probe --out results/report

Rows are matched to the paper's rows by the probe row's ``label`` (``probe.py --label``) or the recipe
recorded in the encoder's meta.json (``gin/ijepa_sa.gin`` -> ``ijepa_sa``); ``--relabel OLD=NEW`` renames
keys. Writes ``OUT/report.md`` and ``OUT/report.csv`` (or ``X.md`` and ``X.csv`` for ``--out X.md``) atomically and prints the markdown.
"""
from __future__ import annotations

import sys
from pathlib import Path

from crossscale_kit.cli import main_guard, parser  # noqa: E402


def run(argv=None) -> list[dict]:
    """Parse ``argv`` and do the work; user errors raise ``ValueError`` / ``OSError`` (``main`` exits 2 on them)."""
    p = parser(__doc__)
    p.add_argument("results", nargs="*", help="probe result JSON files or folders")
    p.add_argument("--runs", nargs="+", default=[], help="same as the positional results")
    p.add_argument("--out", default="results/report", help="output folder, or a .md file (the .csv goes beside it)")
    p.add_argument("--relabel", nargs="*", default=[], help="KEY=NEWKEY pairs, e.g. my_run=ijepa_sa")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from crossscale_kit.eval.rows import write_csv_atomic, write_text_atomic
    from crossscale_kit.eval.tables import aggregate, build_tables, load_rows, to_csv_rows, to_markdown

    relabel = {}
    for item in args.relabel:
        if "=" not in item:
            raise ValueError(f"--relabel {item!r} must look like OLD=NEW.")
        k, v = item.split("=", 1)
        relabel[k] = v
    sources = list(args.results) + list(args.runs)
    if not sources:
        raise ValueError("give probe result files or folders (positional or --runs).")
    rows = load_rows(sources)
    if not rows:
        raise ValueError(f"no probe rows found in {sources}; run tools/probe.py --out DIR first.")
    tables = build_tables(aggregate(rows, relabel))
    md = to_markdown(tables)
    out = Path(args.out)
    md_path = out if out.suffix == ".md" else out / "report.md"
    write_text_atomic(md_path, md)
    write_csv_atomic(md_path.with_suffix(".csv"), to_csv_rows(tables))
    if not args.quiet:
        print(md)
    return tables


@main_guard
def main(argv: list[str]) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
