"""Suite-wide setup.

- Without CUDA the Triton kernels run under ``TRITON_INTERPRET=1``; it must be set before ``crossscale_kernels`` is
  first imported (by any test folder), so it is set here, in the root conftest that pytest loads first.
- Synthetic data caches go to a per-session temporary folder; torch uses few threads.
- The fake-data fixtures of ``tests/data`` (GEO-Bench, MADOS, Sen2Venus, GeoTIFF pairs, tiny encoders).
"""
import os
import tempfile

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

_CACHE = tempfile.mkdtemp(prefix="crossscale-test-cache-")
os.environ.setdefault("CROSSSCALE_CACHE", _CACHE)
torch.set_num_threads(min(2, os.cpu_count() or 1))

from tests.data.fixtures import (  # noqa: E402,F401 - fixtures shared by tests/kit/eval and tests/tools
    geobench_root,
    geotiff_pair,
    mados_root,
    sen2venus_fake,
    tiny_encoder,
    tiny_encoder_b,
)
