"""Weight-sharing supernet (dynamic, weight-sliced layers) and static subnet extraction."""

from nastools.supernet.model import Supernet
from nastools.supernet.static import StaticSubnet, build_block

__all__ = ["StaticSubnet", "Supernet", "build_block"]
