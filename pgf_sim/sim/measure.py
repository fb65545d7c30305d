"""Time dense GEMMs (and, on CUDA, 2:4 semi-structured vs dense) on the local device.

``pgf-sim measure`` writes a measurement file (``measurements.py`` format) that
``pgf-sim calibrate`` fits a target's named factors to. torch is imported inside
``measure`` only: the simulator core stays torch-free.

Each case is ``y = x W^T`` with x (M, K) and W (N, K), timed as the median over repeated blocks
of back-to-back calls after one warm-up call (on CUDA, synchronised around each block), i.e.
the eager per-call time a PyTorch user sees. On the CPU the calls cycle through copies of the
weight totalling ``CPU_COLD_BYTES`` (more than the last-level cache), so each call reads its
weight from DRAM as the cost model assumes; with one copy a small weight stays in cache.
"""
from __future__ import annotations

import itertools
import platform
import statistics
import time
from pathlib import Path

from ..core.errors import ConfigError

# M from 1 upward (decode-like rows to large batches) x square-ish weights.
DEFAULT_M = (1, 8, 64, 256, 1024)
DEFAULT_NK = ((256, 256), (1024, 1024), (2048, 2048))
TINY_M = (1, 16, 128)
# Weights cycled per case on the CPU: above the 480 MiB L3 lscpu reports on the build machine.
CPU_COLD_BYTES = 512 * 2**20
TINY_NK = ((128, 128), (512, 512))


def parse_grid(m_values: str | None, nk_values: str | None, *, tiny: bool = False) -> list[tuple[int, int, int]]:
    """Grid of (M, N, K) from ``"1,8,64"`` and ``"256x256,1024x1024"`` (defaults when None)."""
    try:
        ms = tuple(int(x) for x in m_values.split(",")) if m_values else (TINY_M if tiny else DEFAULT_M)
        nks = (tuple(tuple(int(v) for v in x.split("x")) for x in nk_values.split(",")) if nk_values
               else (TINY_NK if tiny else DEFAULT_NK))
    except ValueError:
        raise ConfigError(f"--m {m_values!r} / --nk {nk_values!r}: expected e.g. --m 1,8,64 --nk 256x256,1024x1024") from None
    if any(m < 1 for m in ms) or any(len(nk) != 2 or min(nk) < 1 for nk in nks):
        raise ConfigError("--m values must be >= 1 and --nk entries N x K with N, K >= 1")
    return [(m, n, k) for (n, k) in nks for m in ms]


def describe_host() -> dict:
    """Device description of this CPU: model, cores and flags as lscpu / /proc/cpuinfo report them."""
    import os

    info = {"name": platform.processor() or platform.machine(), "cores": os.cpu_count() or 1}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and "model" not in info:
                info["model"] = value.strip()
            if key.strip() == "flags" and "simd" not in info:
                flags = set(value.split())
                info["simd"] = "avx512f" if "avx512f" in flags else ("avx2" if "avx2" in flags else "other")
    return info


def _time_call(fn, sync, min_block_s: float, blocks: int, clock=time.perf_counter) -> float:
    fn()
    sync()
    calls = 1
    while True:  # calls per block so that a block lasts at least min_block_s
        t0 = clock()
        for _ in range(calls):
            fn()
        sync()
        if clock() - t0 >= min_block_s or calls >= 1 << 16:
            break
        calls *= 2
    samples = []
    for _ in range(blocks):
        t0 = clock()
        for _ in range(calls):
            fn()
        sync()
        samples.append((clock() - t0) / calls)
    return statistics.median(samples)


def read_bandwidth(device: str = "cpu", mib: int = 1024, clock=time.perf_counter) -> float:
    """Measured DRAM read bandwidth in bytes/s: a sum over ``mib`` MiB (beyond the caches), the
    access pattern of a weight stream."""
    import torch

    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t = _time_call(lambda: src.sum(), sync, 0.05, 5, clock)
    return src.nbytes / t


def measure(grid: list[tuple[int, int, int]], *, device: str = "cpu", dtype: str = "fp32", sparse: bool = False,
            min_block_s: float = 0.02, blocks: int = 5, threads: int | None = None,
            cold_bytes: int | None = None) -> dict:
    """Time every (M, N, K) of ``grid``; returns ``{device, dense, sparse}`` for ``write_measurements``."""
    import torch

    torch_dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in torch_dtypes:
        raise ConfigError(f"--dtype {dtype!r}: measure times {', '.join(torch_dtypes)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here")
    if sparse and not device.startswith("cuda"):
        raise ConfigError("--sparse needs --device cuda (2:4 semi-structured kernels are CUDA only)")
    if threads:
        torch.set_num_threads(threads)
    tdt = torch_dtypes[dtype]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    # One CPU thread: count this process's CPU seconds, so other jobs taking the core away do
    # not inflate the figures (a shared machine); otherwise wall-clock time.
    single_cpu = not device.startswith("cuda") and torch.get_num_threads() == 1
    clock = time.process_time if single_cpu else time.perf_counter
    cold = CPU_COLD_BYTES if cold_bytes is None and not device.startswith("cuda") else (cold_bytes or 0)
    gen = torch.Generator(device="cpu").manual_seed(0)
    dense, sparse_rows = [], []
    how = (f"pgf-sim measure on this machine ({device}, torch {torch.__version__}, median of {blocks} blocks, "
           f"{'process CPU time' if single_cpu else 'wall clock'})")
    with torch.inference_mode():
        for m, n, k in grid:
            x = torch.randn(m, k, generator=gen).to(device=device, dtype=tdt)
            w = torch.randn(n, k, generator=gen).to(device=device, dtype=tdt)
            # Cycle through copies of W totalling cold_bytes, so each call reads its weight from
            # DRAM as a layer of a real forward pass does (not from a cache warmed by the last call).
            copies = [w] + [w.clone() for _ in range(max(0, -(-cold // w.nbytes) - 1))] if cold else [w]
            turn = itertools.count()
            t = _time_call(lambda: torch.nn.functional.linear(x, copies[next(turn) % len(copies)]), sync,
                           min_block_s, blocks, clock)
            del copies
            dense.append({"m": m, "n": n, "k": k, "dtype": dtype, "time_s": float(t), "source": how})
            if sparse:
                from torch.sparse import to_sparse_semi_structured

                mask = torch.tensor([0, 0, 1, 1], dtype=torch.bool, device=device).tile(n, k // 4)
                w24 = (w * mask).contiguous()
                ws = to_sparse_semi_structured(w24)
                td = _time_call(lambda: torch.nn.functional.linear(x, w24), sync, min_block_s, blocks)
                ts = _time_call(lambda: torch.nn.functional.linear(x, ws), sync, min_block_s, blocks)
                sparse_rows.append({"name": f"{m}x{n}x{k} to_sparse_semi_structured", "kind": "gemm", "m": m, "n": n,
                                    "k": k, "dtype": dtype, "dense_s": float(td), "sparse_s": float(ts), "source": how})
    if device.startswith("cuda"):
        desc = {"name": torch.cuda.get_device_name(0), "description": f"CUDA {torch.version.cuda}"}
    else:
        host = describe_host()
        desc = {"name": host.get("model", host["name"]),
                "description": f"{torch.get_num_threads()} torch threads, weights cycled over {cold / 2**20:.0f} MiB of {host['cores']} cores, simd {host.get('simd')}, "
                               f"read bandwidth {read_bandwidth(device, clock=clock) / 1e9:.2f} GB/s"}
    return {"device": desc, "dense": dense, "sparse": sparse_rows}
