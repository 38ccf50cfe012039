"""Sources that ``tools/make_shards.py`` turns into pair shards, one module per sub-command.

Each module defines ``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> dict`` (a summary: written, skipped by reason, output folder).
"""
SOURCES = {
    "synthetic": "kit.data.sources.synthetic",
    "sen2venus": "kit.data.sources.sen2venus",
    "geotiff": "kit.data.sources.geotiff",
}
