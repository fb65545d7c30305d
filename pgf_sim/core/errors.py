"""Exception types a user can act on. Every message says what, where and what would be valid."""


class PgfSimError(Exception):
    """Base class of every error pgf_sim raises on purpose."""


class ConfigError(PgfSimError, ValueError):
    """A configuration file or value is wrong: names the file, the field and the valid values."""


class ShapeError(PgfSimError, ValueError):
    """A layer's shape does not fit an N:M pattern: names the layer and its shape."""


class UnknownNameError(PgfSimError, KeyError):
    """A name is not registered: lists the registered names."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the plain message
        return str(self.args[0]) if self.args else ""
