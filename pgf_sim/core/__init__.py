"""Shared, torch-free building blocks: the N:M pattern, registries, strict config loading."""
from .config import apply_overrides, from_dict, load_yaml, set_values, to_dict
from .errors import ConfigError, PgfSimError, ShapeError, UnknownNameError
from .pattern import DENSE, NM
from .registry import Registry

__all__ = [
    "NM", "DENSE", "Registry", "ConfigError", "PgfSimError", "ShapeError", "UnknownNameError",
    "from_dict", "to_dict", "load_yaml", "apply_overrides", "set_values",
]
