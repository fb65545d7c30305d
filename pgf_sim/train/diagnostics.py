"""Gradient-noise diagnostics of the weight layers a recipe sparsifies.

Measurement window: every ``every`` steps the last ``window`` = K consecutive training steps
are measured (steps s-K+1 .. s, logged at s, where s+1 is a multiple of ``every``). At each
measured step t, g_t is the gradient of the loss w.r.t. the *trainable dense weight* W of a
layer, as the optimiser receives it (after backward, before clipping; under DDP after the
all-reduce), and m_t is the layer's binary N:M mask at that step. For the dense baseline the
same layers are measured and m_t is the mask the target N:M pattern *would* select from the
current weights (``masks.nm_mask``), so both runs report comparable numbers.

Definitions, with P the number of weights of the layer and i one weight:

- ``grad_var``  = (1/P) sum_i  1/(K-1) sum_t (g_{t,i} - gbar_i)^2,  gbar_i = (1/K) sum_t g_{t,i}
  the per-weight unbiased variance of the gradient across the K minibatches, averaged over
  the layer's weights. (Over K steps the weights move a little; with K small against the run
  length this is the minibatch noise of the gradient at nearly fixed weights.)
- ``grad_var_kept`` / ``grad_var_pruned``: the same mean restricted to weights kept / pruned by
  the window's last mask (pruned is absent when nothing is pruned, e.g. 1:1).
- ``grad_mean_sq`` = (1/P) sum_i gbar_i^2 (the signal), and
  ``grad_noise_ratio`` = grad_var / grad_mean_sq (noise-to-signal; large = noisy).
- ``grad_diff`` = 1/(K-1) sum_{t>1} ||g_t - g_{t-1}||_F / ||g_{t-1}||_F,
  the mean relative step-to-step change of the layer's gradient.
- ``mask_flip_rate`` = 1/(K-1) sum_{t>1} (1/P) sum_i [m_{t,i} != m_{t-1,i}],
  the mean fraction of mask entries that change from one step to the next.

A run resumed inside a window measures only the window's remaining steps (K is then the
number actually seen). Cost: two running sums per layer plus the previous gradient and mask, only during windows.
"""
from __future__ import annotations

import torch


class GradNoiseMonitor:
    """Accumulates one window of gradients/masks per layer; ``update`` returns the summary at
    the window's last step (``{layer: {key: value}}``) and ``None`` otherwise."""

    def __init__(self, every: int, window: int) -> None:
        if every < 1 or not 2 <= window <= every:
            raise ValueError(f"need every >= 1 and 2 <= window <= every, got every={every}, window={window}")
        self.every = every
        self.window = window
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._sum: dict[str, torch.Tensor] = {}
        self._sum_sq: dict[str, torch.Tensor] = {}
        self._prev_g: dict[str, torch.Tensor] = {}
        self._prev_m: dict[str, torch.Tensor] = {}
        self._diff: dict[str, float] = {}
        self._flips: dict[str, float] = {}

    def active(self, step: int) -> bool:
        """True if training step ``step`` (0-based) lies in a measurement window."""
        return step % self.every >= self.every - self.window

    def update(self, step: int, grads: dict[str, torch.Tensor],
               masks: dict[str, torch.Tensor]) -> dict[str, dict[str, float]] | None:
        if not self.active(step):
            return None
        for name, g in grads.items():
            # copy=True: a float64 gradient would otherwise be kept by reference as the previous
            # gradient, and the caller's in-place clipping after this call would rewrite it
            g = g.detach().to(torch.float64, copy=True)
            m = masks[name].detach().bool()
            if name in self._sum:
                self._sum[name] += g
                self._sum_sq[name] += g * g
                prev = self._prev_g[name]
                self._diff[name] += (float(torch.linalg.vector_norm(g - prev))
                                     / max(float(torch.linalg.vector_norm(prev)), 1e-30))
                self._flips[name] += float((m != self._prev_m[name]).double().mean())
            else:
                self._sum[name], self._sum_sq[name] = g.clone(), g * g
                self._diff[name] = self._flips[name] = 0.0
            self._prev_g[name], self._prev_m[name] = g, m.clone()
        self._count += 1
        if step % self.every != self.every - 1:
            return None
        out = self._summary()
        self._reset()
        return out

    def _summary(self) -> dict[str, dict[str, float]]:
        k = self._count
        out: dict[str, dict[str, float]] = {}
        if k < 2:  # a resume landed on the window's last step: nothing to measure
            return out
        for name, s in self._sum.items():
            mean = s / k
            var = (self._sum_sq[name] - k * mean * mean).clamp_min(0.0) / (k - 1)  # unbiased, per weight
            mean_sq = float((mean * mean).mean())
            keep = self._prev_m[name]
            row = {
                "grad_var": float(var.mean()),
                "grad_mean_sq": mean_sq,
                "grad_noise_ratio": float(var.mean()) / mean_sq if mean_sq > 0 else float("inf"),
                "grad_diff": self._diff[name] / (k - 1),
                "mask_flip_rate": self._flips[name] / (k - 1),
                "grad_var_kept": float(var[keep].mean()),
            }
            if not bool(keep.all()):
                row["grad_var_pruned"] = float(var[~keep].mean())
            out[name] = row
        return out
