"""pgf_sim: N:M sparse training with progressive gradient flow + an N:M accelerator cost simulator.

Importing this package loads no torch: the simulator core is pure NumPy. Training code lives
in ``pgf_sim.train`` and imports torch itself.
"""
from .core import NM, ConfigError, PgfSimError, ShapeError, UnknownNameError

__version__ = "0.1.0"
__all__ = ["NM", "ConfigError", "PgfSimError", "ShapeError", "UnknownNameError", "__version__"]
