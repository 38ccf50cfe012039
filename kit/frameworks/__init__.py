"""Host SSL frameworks and the spatial-affinity add-on."""
from kit.frameworks.base import Framework, HostOutput
from kit.frameworks.ijepa import IJEPA
from kit.frameworks.latentmim import LatentMIM
from kit.frameworks.mae import MAE
from kit.frameworks.spatial_affinity import SpatialAffinity

__all__ = ["Framework", "HostOutput", "IJEPA", "LatentMIM", "MAE", "SpatialAffinity"]
