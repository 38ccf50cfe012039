"""Suite-wide setup: synthetic data caches go to a per-session temporary folder, torch uses few threads."""
import os
import tempfile

import torch

_CACHE = tempfile.mkdtemp(prefix="crossscale-test-cache-")
os.environ.setdefault("CROSSSCALE_CACHE", _CACHE)
torch.set_num_threads(min(2, os.cpu_count() or 1))
