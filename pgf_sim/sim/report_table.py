"""Text forms of simulation results: aligned terminal tables, CSV and JSON (no torch, no pandas).

Values stay in SI units (FLOPs, bytes, seconds, joules) in CSV/JSON; only the terminal table
scales them to readable prefixes.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable, Sequence

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
_SMALL = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))


def si(value: float, unit: str = "") -> str:
    """``1.5e9, "FLOP"`` -> ``1.50 GFLOP``; ``2.3e-5, "s"`` -> ``23.0 µs`` (the report's prefixes)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return f"0 {unit}".rstrip()
    mag = abs(value)
    table = _PREFIXES if mag >= 1 else _SMALL
    for scale, prefix in table:
        if mag >= scale or scale == table[-1][0]:
            scaled = value / scale
            digits = 2 if abs(scaled) < 10 else 1 if abs(scaled) < 100 else 0
            return f"{scaled:.{digits}f} {prefix}{unit}".rstrip()
    return f"{value:g} {unit}".rstrip()


def format_columns(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()) -> str:
    """Plain aligned text table; columns in ``right`` are right-aligned (numbers)."""
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in text_rows)
    return "\n".join(out)


def rows_to_csv(rows: list[dict], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default)


def _json_default(obj: Any) -> Any:
    import numpy as np  # numpy scalars that slipped into a row

    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
