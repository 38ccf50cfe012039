"""Host SSL frameworks and the spatial-affinity add-on."""
from crossscale_kit.frameworks.base import Framework, HostOutput
from crossscale_kit.frameworks.ijepa import IJEPA
from crossscale_kit.frameworks.latentmim import LatentMIM
from crossscale_kit.frameworks.mae import MAE
from crossscale_kit.frameworks.spatial_affinity import SpatialAffinity

__all__ = ["Framework", "HostOutput", "IJEPA", "LatentMIM", "MAE", "SpatialAffinity"]
