"""The task's quality metric as a value: its name, unit and direction (no torch).

A task is judged by one metric. Classification: ``accuracy`` (higher is better). Language
modelling: ``bpc`` (bits per character = mean next-token cross-entropy / ln 2), ``perplexity``
(exp of that cross-entropy) or ``loss`` (the cross-entropy in nats); all three lower is better.
Pareto fronts, picks, mixed budgets and report labels take the metric from here, so a front of
bpc is drawn and chosen the right way round.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UnknownNameError


@dataclass(frozen=True)
class Metric:
    """``scale``: display factor (accuracy in [0, 1] is shown in percent)."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    scale: float = 1.0
    default_budget: float = 0.0  # how much worse than dense a pick may be when no limit is given

    def oriented(self, value: float) -> float:
        """``value`` turned so that larger is better (for comparisons, never for display)."""
        return value if self.higher_is_better else -value

    @property
    def axis_label(self) -> str:
        """``"bits per character (bits/char, lower is better)"``."""
        better = "higher" if self.higher_is_better else "lower"
        return f"{self.label} ({self.unit}, {better} is better)"

    def fmt(self, value: float, std: float | None = None) -> str:
        """``"2.941 ± 0.012 bits/char"`` or ``"92.61% ± 1.40"``."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if self.unit == "%":
            text = f"{value * self.scale:.2f}%"
            return text if std is None else f"{text} ± {std * self.scale:.2f}"
        text = f"{value * self.scale:.4f}" + ("" if std is None else f" ± {std * self.scale:.4f}")
        return f"{text} {self.unit}"

    def fmt_delta(self, delta: float) -> str:
        """A difference of two values: ``"1.20 points"`` or ``"0.031 bits/char"``."""
        if self.unit == "%":
            return f"{delta * self.scale:.2f} points"
        return f"{delta * self.scale:.4g} {self.unit}"


METRICS: dict[str, Metric] = {
    # budgets: 1 accuracy point; 0.05 bits/char (= 0.035 nats, about 3.5% perplexity)
    "accuracy": Metric("accuracy", "accuracy", "%", True, 100.0, 0.01),
    "loss": Metric("loss", "cross-entropy", "nats/token", False, 1.0, 0.035),
    "bpc": Metric("bpc", "bits per character", "bits/char", False, 1.0, 0.05),
    "perplexity": Metric("perplexity", "perplexity", "per token", False, 1.0, 0.25),
}
ACCURACY = METRICS["accuracy"]


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise UnknownNameError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}")
    return METRICS[name]
