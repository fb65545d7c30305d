"""Device check: training steps of every recipe, bf16 autocast, fused AdamW (CUDA).

A transformer-MLP stack (fc1 1024 -> 4096, fc2 4096 -> 1024, 4 blocks) sparsified to 2:4 by each
registered recipe with ``pgf_sim.train.sparsify``; times ``--steps`` optimiser steps after a
warm-up and prints ms/step and the ratio to dense. Run by ``benchmarks/device_check.sh``; on a
CPU-only machine ``--device cpu`` runs the same code unfused (a smoke test).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from pgf_sim.core import NM
from pgf_sim.train.recipes import RECIPES
from pgf_sim.sparsity.schedules import RecipeConfig
from pgf_sim.train.sparsify import sparsify


class Mlp(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.norm, self.mlp = nn.LayerNorm(d), Mlp(d, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(x))


def run(recipe: str, device: torch.device, steps: int, tokens: int, d: int, hidden: int, blocks: int) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(*[Block(d, hidden) for _ in range(blocks)]).to(device)
    controller = None
    if recipe != "dense":
        controller = sparsify(model, RecipeConfig(name=recipe, pattern=NM(2, 4)), total_steps=steps + 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x = torch.randn(tokens, d, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = 0.0
    for step in range(steps + 3):
        if step == 3:  # warm-up done
            sync()
            t0 = time.perf_counter()
        if controller is not None:
            controller.set_step(step)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(x).float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--blocks", type=int, default=4)
    a = p.parse_args()
    device = torch.device(a.device)
    names = ["dense"] + [n for n in RECIPES.names() if n != "dense"]
    print(f"{device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}), bf16 autocast, "
          f"AdamW fused={device.type == 'cuda'}, {a.blocks} x MLP {a.d}->{a.hidden}->{a.d}, {a.tokens} tokens, 2:4")
    base = None
    for name in names:
        ms = run(name, device, a.steps, a.tokens, a.d, a.hidden, a.blocks) * 1e3
        base = base or ms
        print(f"  {name:<10} {ms:8.2f} ms/step  ({ms / base:.2f}x dense)")


if __name__ == "__main__":
    main()
