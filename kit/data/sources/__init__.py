"""Sources that ``tools/make_shards.py`` turns into pair shards, one module per sub-command.

A typed source defines an ``Options`` dataclass and ``run(options: Options) -> dict`` (a summary: written,
skipped by reason, output folder); its command-line flags live in ``tools/make_shards.py``, which builds
the options from them. An untyped source defines ``add_arguments(parser)`` and ``run(args)``.
"""
SOURCES = {
    "synthetic": "crossscale_kit.data.sources.synthetic",
    "sen2venus": "crossscale_kit.data.sources.sen2venus",
    "geotiff": "crossscale_kit.data.sources.geotiff",
}
