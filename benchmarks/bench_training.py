"""Step time of every sparse recipe vs dense training of the same model, measured in one run.

    .venv/bin/python benchmarks/bench_training.py [--device cpu|cuda] [--rounds 5] [--steps 10]

A step = ``controller.set_step`` + forward + backward + clip + AdamW step, on a fixed batch, in
the middle of the sparse phase (masks recomputed every step because the weights changed;
MDGF's beta still > 0). Recipes are timed in interleaved rounds (dense, ste, ..., dense, ste,
...) so that load drift on a shared machine hits all of them alike; the median round is
reported. Target (issue 2): sparse step time <= 1.15x dense. The last column says how much of
the step the N:M mask computation takes (``masks.nm_mask`` on every sparse layer, timed
alone), which is what sparse training adds besides the elementwise W*m.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pgf_sim.core import NM
from pgf_sim.train.data import DataSpec
from pgf_sim.train.experiment import ModelConfig
from pgf_sim.train.masks import nm_mask
from pgf_sim.train.models import build_model
from pgf_sim.sparsity.schedules import RECIPES, RecipeConfig
from pgf_sim.train.sparsify import sparsify

CASES = {
    # the default experiment: 4-block ViT on 8x8 digits, patch 2 -> 16 patches + cls, batch 64
    "vit-digits": (ModelConfig("vit", {"patch_size": 2, "dim": 64, "depth": 4, "heads": 4}), DataSpec("image", (1, 8, 8), 10), 64),
    # a bigger ViT: ViT-Ti width (192) on CIFAR-sized 32x32 images, patch 4 -> 64 patches + cls
    "vit-tiny-32px": (ModelConfig("vit", {"patch_size": 4, "dim": 192, "depth": 6, "heads": 3}), DataSpec("image", (3, 32, 32), 10), 32),
    # ViT-S width: meant for a GPU (--cases vit-small-32px); minutes per configuration on a CPU
    "vit-small-32px": (ModelConfig("vit", {"patch_size": 4, "dim": 384, "depth": 6, "heads": 6}), DataSpec("image", (3, 32, 32), 10), 64),
}
TOTAL_STEPS = 1000
START = 500  # mid sparse phase for every recipe's default phases


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Trainee:
    def __init__(self, case: str, recipe: str, pattern: NM, device: torch.device) -> None:
        model_cfg, spec, batch = CASES[case]
        torch.manual_seed(0)
        self.model = build_model(model_cfg, spec)
        self.ctl = sparsify(self.model, RecipeConfig(name=recipe, pattern=pattern), TOTAL_STEPS)
        self.model.to(device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.x = torch.randn(batch, *spec.input_shape, device=device)
        self.y = torch.randint(0, spec.num_classes, (batch,), device=device)
        self.step = START
        self.device = device

    def run(self, steps: int) -> float:
        """Mean seconds per training step over ``steps`` steps."""
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.ctl.set_step(self.step)
            loss = F.cross_entropy(self.model(self.x), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.step += 1
        _sync(self.device)
        return (time.perf_counter() - t0) / steps

    def mask_time(self, reps: int = 5) -> float:
        """Seconds to compute the masks of every sparse layer once (the per-step mask cost)."""
        weights = self.ctl.dense_weights()
        patterns = {n: info.pattern for n, info in self.ctl.layer_info().items()}
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(reps):
            for name, w in weights.items():
                if not patterns[name].is_dense:
                    nm_mask(w.detach(), patterns[name])
        _sync(self.device)
        return (time.perf_counter() - t0) / reps


def bench(case: str, pattern: NM, device: torch.device, rounds: int, steps: int) -> None:
    recipes = RECIPES.names()
    trainees = {r: Trainee(case, r, pattern, device) for r in recipes}
    for t in trainees.values():
        t.run(3)  # warm-up: allocator, autograd graph caches
    times: dict[str, list[float]] = {r: [] for r in recipes}
    for _ in range(rounds):
        for r in recipes:
            times[r].append(trainees[r].run(steps))
    dense = statistics.median(times["dense"])
    print(f"\n{case}, pattern {pattern}, device {device}, {rounds} rounds x {steps} steps (median round)", flush=True)
    print(f"{'recipe':<12}{'ms/step':>10}{'x dense':>10}{'mask ms':>10}{'mask share':>12}  target <= 1.15x", flush=True)
    for r in recipes:
        med = statistics.median(times[r])
        mask_s = trainees[r].mask_time() if r != "dense" else 0.0
        verdict = "" if r == "dense" else ("ok" if med / dense <= 1.15 else "MISSES")
        print(f"{r:<12}{med * 1e3:>10.2f}{med / dense:>10.3f}{mask_s * 1e3:>10.2f}{mask_s / med:>11.1%}  {verdict}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--patterns", default="2:4,1:8")
    ap.add_argument("--cases", default="vit-digits,vit-tiny-32px")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads", flush=True)
    for case in args.cases.split(","):
        for pattern in args.patterns.split(","):
            bench(case, NM.parse(pattern), device, args.rounds, args.steps)


if __name__ == "__main__":
    main()
