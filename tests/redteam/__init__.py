"""Red team (issue 23): one test per way the kit could lose, mix or mislabel data, written from the user's side.

Each test runs a tool in a subprocess (``tools/*.py``) on real files (GeoTIFFs written with rasterio, shard
sets written by ``make_shards.py``, Sen2Venus fakes in the release layout) and asserts what the user sees:
exit code 2, one ``error:`` line naming the file and the fix, no traceback, and files left as they were.

- ``test_run_folder``: foreign files in --workdir, planted links (.lock, logs), --resume auto after a kill
  before the first checkpoint, a fresh run that fails to start, export permissions.
- ``test_data``: band order vs normalisation, a replaced shard set on resume, 0-1 reflectance with outliers,
  undeclared nodata, uint16 overflow, RGB + undefined colour interpretation, empty output sets, --prefix,
  two writers of one --out, truncated shards, scale-1 shards under a cross-scale recipe, Sen2Venus index
  paths outside the dataset root.
- ``test_cli_errors``: gin syntax errors, undefined macros, gin imports, tool argument kinds, broken exports.
"""
