"""N:M mask computation: pgf_sim's vectorised ``nm_mask`` vs naive baselines, measured in one run.

Baselines:
- ``argsort``: the common formulation, ``argsort(|w| per group)`` + ``scatter`` (ties left to
  the sort, so not deterministic by rule);
- ``stable-sort``: the same with a stable sort (``masks.reference_mask``, deterministic);
- ``loop``: a Python loop over groups (small shape only; it is what "no loop over groups" avoids).

Usage: ``python benchmarks/bench_masks.py [--device cuda] [--repeat 5] [--threads 1] [--quick]``.
Prints a table of best-of-``repeat`` times (the least disturbed run: the benchmark machines are
shared) and the ratio baseline / nm_mask (> 1 means nm_mask is faster).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from pgf_sim.core import NM
from pgf_sim.train.masks import nm_mask, reference_mask, to_groups

SHAPES = [(768, 3072), (3072, 768), (4096, 11008)]
PATTERNS = ["2:4", "1:4", "2:8", "1:8", "1:16", "1:32"]


def argsort_mask(w: torch.Tensor, p: NM) -> torch.Tensor:
    a = to_groups(w.abs(), p.m)
    idx = a.argsort(dim=1, descending=True)[:, : p.n]
    return torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True).reshape(w.shape)


def loop_mask(w: torch.Tensor, p: NM) -> torch.Tensor:
    a = to_groups(w.abs(), p.m)
    out = torch.zeros_like(a, dtype=torch.bool)
    for g in range(a.shape[0]):
        out[g, a[g].argsort(descending=True, stable=True)[: p.n]] = True
    return out.reshape(w.shape)


def timeit(fn, repeat: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip the 4096x11008 shape")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = SHAPES[:2] if args.quick else SHAPES
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} repeat={args.repeat}")
    print(f"{'shape':>12} {'pattern':>7} {'nm_mask ms':>10} {'argsort ms':>10} {'stable ms':>10} "
          f"{'argsort/nm':>10} {'stable/nm':>9}")
    ratios = []
    for shape in shapes:
        w = torch.randn(shape, device=args.device)
        for text in PATTERNS:
            p = NM.parse(text)
            assert torch.equal(nm_mask(w, p), reference_mask(w, p))
            t_nm = timeit(lambda: nm_mask(w, p), args.repeat, args.device)
            t_arg = timeit(lambda: argsort_mask(w, p), args.repeat, args.device)
            t_st = timeit(lambda: reference_mask(w, p), args.repeat, args.device)
            ratios.append(t_arg / t_nm)
            print(f"{'x'.join(map(str, shape)):>12} {text:>7} {t_nm * 1e3:10.2f} {t_arg * 1e3:10.2f} "
                  f"{t_st * 1e3:10.2f} {t_arg / t_nm:10.2f} {t_st / t_nm:9.2f}")
    geo = statistics.geometric_mean(ratios)
    print(f"geometric mean speed-up of nm_mask over argsort+scatter: {geo:.2f}x")
    small = torch.randn(64, 256, device=args.device)
    for text in ("2:4", "1:16"):
        p = NM.parse(text)
        t_nm = timeit(lambda: nm_mask(small, p), args.repeat, args.device)
        t_loop = timeit(lambda: loop_mask(small, p), 1, args.device)
        print(f"64x256 {text}: nm_mask {t_nm * 1e3:.3f} ms, per-group Python loop {t_loop * 1e3:.1f} ms "
              f"({t_loop / t_nm:.0f}x)")


if __name__ == "__main__":
    main()
