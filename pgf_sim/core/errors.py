"""Exception types a user can act on. Every message says what, where and what would be valid."""
import re

# C0 and C1 control characters and DEL (ESC starts terminal commands: clear screen, set the
# title), plus the line and paragraph separators that would split a one-line message.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), safe to print on a terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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
