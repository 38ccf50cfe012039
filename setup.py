"""Install the cross-scale SSL kit (packages ``kit`` and ``kernels``)."""
from setuptools import find_packages, setup

setup(
    name="crossscale-kit",
    version="0.1.0",
    description="Cross-scale self-supervised pretraining of satellite imagery: spatial-affinity add-on, "
    "I-JEPA / LatentMIM hosts, fused Triton gram loss, WebDataset paired tiles, linear probes.",
    python_requires=">=3.10",
    packages=find_packages(include=["kit", "kit.*", "kernels", "kernels.*"]),
    install_requires=[
        "torch>=2.4,<=2.14.1",
        "triton",
        "timm>=1.0",
        "gin-config>=0.5",
        "webdataset>=0.2.86",
        "rasterio>=1.3",
        "einops",
        "numpy",
        "safetensors",
        "tqdm",
        "tensorboard",
        "h5py",
        "matplotlib",
        "scipy",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "pytest-timeout"],
    },
)
