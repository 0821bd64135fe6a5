"""nastools: train a weight-sharing supernet, profile a device, search under a latency
budget, and export the chosen subnet."""

from nastools.errors import NastoolsError
from nastools.space import Arch, SearchSpace, StageArch, list_spaces, load_arch, load_space

__version__ = "0.1.0"

__all__ = ["Arch", "NastoolsError", "SearchSpace", "StageArch", "list_spaces", "load_arch", "load_space", "__version__"]
