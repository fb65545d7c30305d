"""Time GEMMs and whole models on the local device, dense and (on CUDA sm80+) 2:4 semi-structured.

``pgf-sim measure`` writes a measurement file (``measurements.py`` format) that
``pgf-sim calibrate`` fits a target's named factors to. torch is imported inside the functions
only: the simulator core stays torch-free.

GEMMs (``measure``). Each case is ``y = x W^T`` (``F.linear``) with x (M, K) and W (N, K), timed
in each requested ``timing`` (``measurements.TIMINGS``), every case written with its ``timing``:

- ``kernel``: device time per call of back-to-back calls, without the host's launch cost. On
  CUDA a loop of calls is captured in one CUDA graph (``torch.cuda.CUDAGraph``) and its replays
  are timed with CUDA events: time per call = replay time / calls, median over replays. Where
  capturing the 2:4 op fails, CUDA events around a back-to-back eager loop instead (the case's
  ``source`` says so; the host launch is then hidden only where the kernel outlasts it). On the
  CPU there is no graph: back-to-back calls, timed as ``eager`` is (the source says so).
- ``eager``: wall-clock time per call of a loop of eager calls ending in one synchronisation
  (host dispatch and launch included; the host issues the next call while the device runs this
  one), median over loops. With one CPU thread the CPU's figures count this process's CPU time,
  so other jobs on a shared machine do not inflate them (the source says which clock).
- ``call`` (only when asked for): one call timed alone between synchronisations, so host cost
  and kernel add up; median over calls.

Every call reads its weight cold: the calls cycle through copies of W, on CUDA totalling at
least 4x the L2 cache and 256 MiB (at most a quarter of the free memory and ``MAX_COPIES``
copies), on the CPU ``CPU_COLD_BYTES`` (above the last-level cache), as a layer of a real
forward pass reads its weight from DRAM rather than from a cache the previous call warmed.

2:4 cases are timed where the device runs semi-structured sparse kernels (CUDA, compute
capability >= 8.0, ``torch.sparse.to_sparse_semi_structured``): W is pruned to 2:4 along K (the
two largest magnitudes of every four), compressed, and timed like the dense W; each case's
``dense_s`` is the dense case of the same shape and timing. Elsewhere no sparse case is written
and a note says why.

Models (``measure_model``). A built-in architecture of ``workloads`` (``model_names()``), or the
user's declared factory ``package.module:function`` returning an ``nn.Module`` (the trust
boundary of ``pgf_sim.core.trust``: refused before any import unless declared or under
``--trust-module``), is built here as a plain torch module with random weights (sim never
imports train) and its forward timed at each batch x seq_len: ``eager`` as above and, on CUDA,
``kernel`` = forwards captured in a CUDA graph, replays timed with CUDA events (the weights are
not rotated: a forward reads each weight once). A decoder also gets a decode-shaped step: the
forward of batch x 1 token (no KV cache; ``seq_len`` 1 in the file). 2:4 there means the MLP
and Q/K/V weights (the layers ``calibrate`` makes 2:4 for a model case) pruned and compressed.

What is written: ``dense`` holds the GEMM cases; ``sparse`` the 2:4 GEMM cases and, for a
built-in model, a ``kind: model`` entry for each (step, batch, seq_len, timing) that has both a
dense and a 2:4 time. Every other model time (dense only, as on the CPU, or a user's module that
the simulator cannot build) is printed, not written: the format has no dense-only model entry.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import platform
import statistics
import time
from pathlib import Path

from ..core.errors import ConfigError

# CPU defaults: M from 1 upward (decode-like rows to large batches) x square-ish weights.
DEFAULT_M = (1, 8, 64, 256, 1024)
DEFAULT_NK = ((256, 256), (1024, 1024), (2048, 2048))
# CUDA defaults: decode rows to prefill batches over LLaMA-7B-like layer shapes.
CUDA_DEFAULT_M = (1, 16, 64, 128, 256, 1024, 4096)
CUDA_DEFAULT_NK = ((4096, 4096), (11008, 4096), (4096, 11008))
TINY_M = (1, 16, 128)
TINY_NK = ((128, 128), (512, 512))
# Weights cycled per case on the CPU: above the 480 MiB L3 lscpu reports on the build machine.
CPU_COLD_BYTES = 512 * 2**20
# CUDA: the weight copies of a case total at least ROTATE_L2_TIMES x the L2 and MIN_ROTATE_BYTES.
ROTATE_L2_TIMES = 4
MIN_ROTATE_BYTES = 256 * 2**20
L2_FALLBACK_BYTES = 50 * 2**20  # when torch does not report the L2 size
MAX_COPIES = 1024  # CUDA: weight copies per case (nodes of the captured loop)
MAX_GRAPH_CALLS = 2048  # calls captured in one CUDA graph of a GEMM
MAX_GRAPH_FORWARDS = 8  # forwards captured in one CUDA graph of a model
MEASURED_TIMINGS = ("kernel", "eager", "call")  # what measure can time (measurements.TIMINGS)
DEFAULT_TIMINGS = ("kernel", "eager")
MODEL_FAMILIES = ("vit", "encoder", "decoder")  # built-in families measure builds as torch modules
USER_SEQ_LEN = 128  # default tokens per sequence of a user's module


def parse_grid(m_values: str | None, nk_values: str | None, *, tiny: bool = False,
               cuda: bool = False) -> list[tuple[int, int, int]]:
    """Grid of (M, N, K) from ``"1,8,64"`` and ``"256x256,1024x1024"`` (defaults when None: tiny,
    CUDA or CPU)."""
    default_m, default_nk = (TINY_M, TINY_NK) if tiny else (CUDA_DEFAULT_M, CUDA_DEFAULT_NK) if cuda else (DEFAULT_M, DEFAULT_NK)
    try:
        ms = tuple(int(x) for x in m_values.split(",")) if m_values else default_m
        nks = (tuple(tuple(int(v) for v in x.split("x")) for x in nk_values.split(",")) if nk_values
               else default_nk)
    except ValueError:
        raise ConfigError(f"--m {m_values!r} / --nk {nk_values!r}: expected e.g. --m 1,8,64 --nk 256x256,1024x1024") from None
    if any(m < 1 for m in ms) or any(len(nk) != 2 or min(nk) < 1 for nk in nks):
        raise ConfigError("--m values must be >= 1 and --nk entries N x K with N, K >= 1")
    return [(m, n, k) for (n, k) in nks for m in ms]


def parse_timings(text: str | None) -> tuple[str, ...]:
    """``"kernel,eager"`` -> ("kernel", "eager"); None -> ``DEFAULT_TIMINGS``."""
    if text is None:
        return DEFAULT_TIMINGS
    items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not items or any(t not in MEASURED_TIMINGS for t in items):
        raise ConfigError(f"--timing {text!r}: valid: {', '.join(MEASURED_TIMINGS)} "
                          f"(comma-separated, e.g. kernel,eager; default {','.join(DEFAULT_TIMINGS)})")
    return items


def parse_counts(text: str, flag: str) -> tuple[int, ...]:
    """``"1,8"`` -> (1, 8): whole numbers >= 1 for ``flag`` (``--batch``, ``--seq-len``)."""
    try:
        values = tuple(dict.fromkeys(int(x) for x in text.split(",")))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected whole numbers >= 1, e.g. {flag} 1,8") from None
    from .workloads import MAX_DIM

    if not values or min(values) < 1 or max(values) > MAX_DIM:
        raise ConfigError(f"{flag} {text!r}: expected whole numbers in [1, {MAX_DIM}], e.g. {flag} 1,8")
    return values


def describe_host() -> dict:
    """Device description of this CPU: model, cores and flags as lscpu / /proc/cpuinfo report them."""
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
    """Per-call time of back-to-back ``fn()`` calls ending in one ``sync()``: median of
    ``blocks`` blocks, each at least ``min_block_s`` long, after one warm-up call."""
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


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


class _Timer:
    """The three timings of a ``step(i)`` (the i-th call; i picks the weight copy) on one device."""

    def __init__(self, torch, device: str, min_block_s: float, blocks: int, clock) -> None:
        self.torch, self.cuda = torch, device.startswith("cuda")
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        self.min_block_s, self.blocks, self.clock = min_block_s, blocks, clock
        self.clock_name = "process CPU time" if clock is time.process_time else "wall clock"

    def time(self, timing: str, step, period: int = 1, max_calls: int = MAX_GRAPH_CALLS,
             what: str = "calls") -> tuple[float, str]:
        """(seconds per call, how it was timed) of ``step`` in ``timing``; ``step(i)`` cycles
        through ``period`` weight copies."""
        if timing == "kernel":
            return self.kernel(step, period, max_calls, what)
        if timing == "call":
            return self.call(step), f"one call alone between synchronisations ({self.clock_name}), median"
        turn = itertools.count()
        t = _time_call(lambda: step(next(turn)), self.sync, self.min_block_s, self.blocks, self.clock)
        if self.cuda:
            return t, f"wall clock per call of a back-to-back eager loop of {what} ending in one synchronize " \
                      f"(host launch included), median of {self.blocks} loops"
        return t, f"CPU: {self.clock_name} per call of back-to-back eager {what} (dispatch included; a CPU " \
                  f"call is synchronous), median of {self.blocks} loops"

    def call(self, step) -> float:
        step(0)
        self.sync()
        samples: list[float] = []
        for i in itertools.count(1):
            t0 = self.clock()
            step(i)
            self.sync()
            samples.append(self.clock() - t0)
            if (len(samples) >= 2 * self.blocks + 1 and sum(samples) >= self.min_block_s * self.blocks) or len(samples) >= 1000:
                return statistics.median(samples)
        raise AssertionError("unreachable")

    def kernel(self, step, period: int, max_calls: int, what: str) -> tuple[float, str]:
        if not self.cuda:
            turn = itertools.count()
            t = _time_call(lambda: step(next(turn)), self.sync, self.min_block_s, self.blocks, self.clock)
            return t, f"CPU: back-to-back calls, no graph ({self.clock_name} per call of back-to-back {what}, " \
                      f"median of {self.blocks} blocks)"
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        # warm-up on a side stream (lazy initialisation, library handles and workspaces), as
        # torch.cuda.graphs asks before a capture
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for i in range(3):
                step(i)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        # the captured loop: enough calls to last about min_block_s / 4, a whole number of turns
        # through the weight copies (period), so that every replay reads every copy once
        start.record()
        for i in range(8):
            step(i)
        end.record()
        end.synchronize()
        per_call = max(start.elapsed_time(end) / 1e3 / 8, 1e-7)
        calls = min(max_calls, max(1, math.ceil(self.min_block_s / 4 / per_call)))
        calls = period * math.ceil(calls / period)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                for i in range(calls):
                    step(i)
        except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: time it eagerly
            del graph
            torch.cuda.synchronize()
            samples = []
            for _ in range(self.blocks):
                start.record()
                for i in range(calls):
                    step(i)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3 / calls)
            return statistics.median(samples), (
                f"CUDA graph capture failed ({_one_line(exc)}); instead CUDA events around a back-to-back eager "
                f"loop of {calls} {what} (host launch hidden only where the kernel outlasts it), median of {self.blocks} loops")
        graph.replay()
        torch.cuda.synchronize()
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        replays = max(1, min(1000, math.ceil(self.min_block_s / max(start.elapsed_time(end) / 1e3, 1e-7))))
        samples = []
        for _ in range(self.blocks):
            start.record()
            for _ in range(replays):
                graph.replay()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / (replays * calls))
        del graph
        return statistics.median(samples), (
            f"CUDA graph of {calls} back-to-back {what}, {replays} replays timed with CUDA events, median of {self.blocks}")


def sparse_support(device: str) -> str | None:
    """None where 2:4 semi-structured kernels run on ``device``; otherwise why not (one line)."""
    if not device.startswith("cuda"):
        return (f"2:4 semi-structured kernels need a CUDA device of compute capability >= 8.0 "
                f"(torch.sparse.to_sparse_semi_structured); this is --device {device}")
    import torch

    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return f"torch {torch.__version__} has no torch.sparse.to_sparse_semi_structured (2:4 kernels)"
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if (major, minor) < (8, 0):
        return (f"{torch.cuda.get_device_name(torch.device(device))} is compute capability {major}.{minor}; "
                "2:4 semi-structured kernels need >= 8.0 (Ampere or later)")
    return None


def _semi_structured(w):
    """The 2:4 compressed form of a pruned weight (``torch.sparse.to_sparse_semi_structured``)."""
    from torch.sparse import to_sparse_semi_structured

    return to_sparse_semi_structured(w)


def _backend(ws) -> str:
    name = type(ws).__name__.upper()
    return "cuSPARSELt" if "CUSPARSELT" in name else "CUTLASS" if "CUTLASS" in name else type(ws).__name__


def _nbytes(ws, fallback: int) -> int:
    """Bytes of a compressed weight (values and metadata); ``fallback`` where it does not say."""
    parts = [getattr(ws, a, None) for a in ("packed", "meta", "packed_t", "meta_t")]
    total = sum(int(p.nbytes) for p in parts if p is not None and hasattr(p, "nbytes"))
    return total or fallback


def prune_2_4(w):
    """``w`` (N, K) with the two largest magnitudes of every four consecutive along K kept."""
    import torch

    n, k = w.shape
    if k % 4:
        raise ConfigError(f"2:4 along K needs K divisible by 4; weight {n}x{k}")
    groups = w.reshape(n, k // 4, 4)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=w.device)
    keep.scatter_(-1, groups.abs().float().topk(2, dim=-1).indices, True)
    return (groups * keep).reshape(n, k).contiguous()


def _torch_dtype(torch, dtype: str):
    torch_dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in torch_dtypes:
        raise ConfigError(f"--dtype {dtype!r}: measure times {', '.join(torch_dtypes)}")
    return torch_dtypes[dtype]


def _setup(torch, device: str, dtype: str, timings, threads: int | None):
    """Checks common to GEMMs and models: (torch dtype, timings, the device's context)."""
    tdt = _torch_dtype(torch, dtype)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available here")
    elif device != "cpu":
        raise ConfigError(f"--device {device!r}: measure times on cpu or cuda (cuda:N)")
    timings = tuple(timings)
    if not timings or any(t not in MEASURED_TIMINGS for t in timings):
        raise ConfigError(f"timings {timings!r}: valid: {', '.join(MEASURED_TIMINGS)}")
    if threads:
        torch.set_num_threads(threads)
    ctx = torch.cuda.device(torch.device(device)) if device.startswith("cuda") else contextlib.nullcontext()
    return tdt, timings, ctx


def _sparse_plan(device: str, sparse: bool | None, notes: list[str]) -> bool:
    """Whether to time 2:4: ``sparse`` None where the device can (a note says why not), True
    required (an error where it cannot), False never."""
    if sparse is False:
        return False
    why_not = sparse_support(device)
    if why_not is None:
        return True
    if sparse:
        raise ConfigError(f"--sparse: {why_not}")
    notes.append(f"2:4 not measured: {why_not}; dense only")
    return False


def _clock(torch, device: str):
    # One CPU thread: count this process's CPU seconds, so other jobs taking the core away do
    # not inflate the figures (a shared machine); otherwise wall-clock time.
    single_cpu = not device.startswith("cuda") and torch.get_num_threads() == 1
    return time.process_time if single_cpu else time.perf_counter


def _l2_bytes(torch, device: str) -> int:
    props = torch.cuda.get_device_properties(torch.device(device))
    return int(getattr(props, "L2_cache_size", 0) or L2_FALLBACK_BYTES)


def _copy_count(torch, device: str, nbytes: int, cold_bytes: int | None) -> tuple[int, str]:
    """(copies of a weight of ``nbytes`` to cycle through, the words for the source)."""
    if not device.startswith("cuda"):
        cold = CPU_COLD_BYTES if cold_bytes is None else cold_bytes
        copies = max(1, -(-cold // nbytes)) if cold else 1
        return copies, f"weights cycled over {copies} copies ({copies * nbytes / 2**20:.0f} MiB, more than the last-level cache)"
    l2 = _l2_bytes(torch, device)
    want = max(ROTATE_L2_TIMES * l2, MIN_ROTATE_BYTES) if cold_bytes is None else cold_bytes
    copies = min(MAX_COPIES, max(1, -(-want // nbytes)))
    free = torch.cuda.mem_get_info(torch.device(device))[0]
    capped = max(1, min(copies, (free // 4) // max(nbytes, 1)))
    why = " (capped at a quarter of the free memory)" if capped < copies else \
        (f" (capped at {MAX_COPIES} copies)" if copies * nbytes < want else "")
    return capped, (f"weights cycled over {capped} copies ({capped * nbytes / 2**20:.0f} MiB; L2 "
                    f"{l2 / 2**20:.0f} MiB){why}")


def _describe_device(torch, device: str, cold_bytes: int, clock) -> dict:
    if device.startswith("cuda"):
        dev = torch.device(device)
        props = torch.cuda.get_device_properties(dev)
        return {"name": props.name,
                "description": f"CUDA {torch.version.cuda}, compute capability {props.major}.{props.minor}, "
                               f"{props.multi_processor_count} SMs, L2 {_l2_bytes(torch, device) / 2**20:.0f} MiB, "
                               f"{props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"}
    host = describe_host()
    return {"name": host.get("model", host["name"]),
            "description": f"{torch.get_num_threads()} torch threads of {host['cores']} cores, weights cycled over "
                           f"{cold_bytes / 2**20:.0f} MiB, simd {host.get('simd')}, read bandwidth {read_bandwidth(device, clock=clock) / 1e9:.2f} GB/s"}


def measure(grid: list[tuple[int, int, int]], *, device: str = "cpu", dtype: str = "fp32", sparse: bool | None = None,
            timings=DEFAULT_TIMINGS, min_block_s: float = 0.02, blocks: int = 5, threads: int | None = None,
            cold_bytes: int | None = None) -> dict:
    """Time every (M, N, K) of ``grid`` in each of ``timings`` (module docstring), dense and,
    where the device can (``sparse`` None) or must (True), 2:4. Returns ``{device, dense,
    sparse, notes}``: the first three for ``write_measurements``, notes to print."""
    import torch
    import torch.nn.functional as F

    tdt, timings, ctx = _setup(torch, device, dtype, timings, threads)
    notes: list[str] = []
    do_sparse = _sparse_plan(device, sparse, notes)
    clock = _clock(torch, device)
    timer = _Timer(torch, device, min_block_s, blocks, clock)
    gen = torch.Generator(device=device).manual_seed(0)  # on the device: no host-side randn of large x
    prefix = f"pgf-sim measure ({device}, torch {torch.__version__})"
    dense, sparse_rows = [], []
    shapes = list(dict.fromkeys((n, k) for _, n, k in grid))
    # weights are made and compressed outside inference mode (as the PyTorch 2:4 tutorial does);
    # the calls are timed inside it, as a user's inference runs
    with ctx, torch.no_grad():
        for n, k in shapes:
            w = torch.randn(n, k, generator=gen, device=device, dtype=tdt)
            count, rotation = _copy_count(torch, device, w.nbytes, cold_bytes)
            copies = [w] + [w.clone() for _ in range(count - 1)]
            packed, packed_rotation, backend = [], "", ""
            if do_sparse:
                try:
                    w24 = prune_2_4(w)
                    first = _semi_structured(w24)
                    n_sp, packed_rotation = _copy_count(torch, device, _nbytes(first, w.nbytes * 9 // 16), cold_bytes)
                    packed = [first] + [_semi_structured(w24) for _ in range(n_sp - 1)]
                    backend = _backend(first)
                except Exception as exc:  # noqa: BLE001 - a shape the 2:4 kernels refuse: say so, go on
                    notes.append(f"{n}x{k}: no 2:4 case, converting the pruned weight failed ({_one_line(exc)})")
                    packed = []
            with torch.inference_mode():
                for m in [m for m, n_, k_ in grid if (n_, k_) == (n, k)]:
                    x = torch.randn(m, k, generator=gen, device=device, dtype=tdt)
                    dense_t = {}
                    for timing in timings:
                        t, how = timer.time(timing, lambda i, x=x: F.linear(x, copies[i % len(copies)]), len(copies),
                                            what="F.linear calls")
                        dense_t[timing] = t
                        dense.append({"m": m, "n": n, "k": k, "dtype": dtype, "time_s": float(t), "timing": timing,
                                      "source": f"{prefix}: {how}; {rotation}"})
                    for timing in timings if packed else ():
                        try:
                            t, how = timer.time(timing, lambda i, x=x: F.linear(x, packed[i % len(packed)]),
                                                len(packed), what="F.linear calls")
                        except Exception as exc:  # noqa: BLE001 - e.g. an M the kernel refuses
                            notes.append(f"{m}x{n}x{k}: no 2:4 {timing} case ({_one_line(exc)})")
                            continue
                        sparse_rows.append({"name": f"{m}x{n}x{k} 2:4 {backend} ({timing})", "kind": "gemm",
                                            "m": m, "n": n, "k": k, "dtype": dtype, "dense_s": float(dense_t[timing]),
                                            "sparse_s": float(t), "timing": timing,
                                            "source": f"{prefix}: W pruned to 2:4 along K (largest magnitudes), "
                                                      f"to_sparse_semi_structured ({backend}); {how}; {packed_rotation}; "
                                                      f"dense_s: the dense case of the same shape and timing"})
            del copies, packed
        desc = _describe_device(torch, device, CPU_COLD_BYTES if cold_bytes is None else cold_bytes, clock)
    return {"device": desc, "dense": dense, "sparse": sparse_rows, "notes": notes}


# --- whole models -------------------------------------------------------------------------


def model_names() -> list[str]:
    """Built-in models (``workloads``) that ``measure_model`` builds as torch modules."""
    from .workloads import ARCHS, list_models

    return [n for n in list_models() if ARCHS.get(n).family in MODEL_FAMILIES]


def _valid_models() -> str:
    return (f"valid: {', '.join(model_names())}, or 'package.module:function' (your declared factory "
            "returning an nn.Module; --trust-module PACKAGE)")


def resolve_user_model(path: str):
    """The user's factory at ``path``, through the trust boundary: refused before any import
    unless the path is a declared factory already known (an entry point, or decorated in a
    module already imported) or its module is under ``--trust-module``."""
    from ..core.imports import check_factory_path, resolve_factory
    from ..core.trust import UntrustedError, registered_factories, trusted_modules

    module, _ = check_factory_path(path, "--model")  # the standard library is refused by name
    trusted = any(module == m or module.startswith(m + ".") for m in trusted_modules())
    if not trusted and path not in registered_factories():
        raise UntrustedError(f"--model {path!r}: module {module!r} is not trusted; nothing was imported. "
                             f"Pass --trust-module {module.split('.')[0]} if it is your own code, or declare "
                             f"the function under the 'pgf_sim.factories' entry points (see docs/security.md)")
    return resolve_factory(path, "--model")


def _builtin_module(torch, arch):
    """A plain torch module of built-in ``arch`` (module names give the roles of
    ``sparsity.roles``: blocks.<i>.attn.qkv|q|k|v|proj, blocks.<i>.mlp.fc1|fc2|gate_proj|up_proj|down_proj)."""
    nn, F = torch.nn, torch.nn.functional
    d, heads, kvh, hd = arch.d_model, arch.heads, arch.n_kv_heads, arch.head_dim
    kv_dim = kvh * hd

    class RMSNorm(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * self.weight

    def norm():
        return nn.LayerNorm(d) if arch.norm == "layernorm" else RMSNorm(d)

    def rope(x):  # (B, h, T, hd), rotate-half RoPE over positions 0..T-1
        t = x.shape[-2]
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd))
        ang = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if arch.fused_qkv:
                self.qkv = nn.Linear(d, d + 2 * kv_dim, bias=arch.bias)
            else:
                self.q = nn.Linear(d, d, bias=arch.bias)
                self.k = nn.Linear(d, kv_dim, bias=arch.bias)
                self.v = nn.Linear(d, kv_dim, bias=arch.bias)
            self.proj = nn.Linear(d, d, bias=arch.bias)

        def forward(self, x, causal: bool):
            b, t, _ = x.shape
            q, k, v = self.qkv(x).split([d, kv_dim, kv_dim], dim=-1) if arch.fused_qkv else (self.q(x), self.k(x), self.v(x))
            q = q.reshape(b, t, heads, hd).transpose(1, 2)
            k, v = (z.reshape(b, t, kvh, hd).transpose(1, 2) for z in (k, v))
            if arch.rope:
                q, k = rope(q), rope(k)
            if kvh != heads:
                k, v = k.repeat_interleave(heads // kvh, dim=1), v.repeat_interleave(heads // kvh, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and t > 1)
            return self.proj(y.transpose(1, 2).reshape(b, t, d))

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if arch.mlp == "swiglu":
                self.gate_proj = nn.Linear(d, arch.ffn, bias=arch.bias)
                self.up_proj = nn.Linear(d, arch.ffn, bias=arch.bias)
                self.down_proj = nn.Linear(arch.ffn, d, bias=arch.bias)
            else:
                self.fc1 = nn.Linear(d, arch.ffn, bias=arch.bias)
                self.fc2 = nn.Linear(arch.ffn, d, bias=arch.bias)

        def forward(self, x):
            if arch.mlp == "swiglu":
                return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
            return self.fc2(F.gelu(self.fc1(x)) if arch.mlp == "gelu" else F.relu(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.attn, self.norm2, self.mlp = norm(), Attention(), norm(), Mlp()

        def forward(self, x, causal: bool):
            if arch.pre_norm:
                x = x + self.attn(self.norm1(x), causal)
                return x + self.mlp(self.norm2(x))
            x = self.norm1(x + self.attn(x, causal))  # BERT: post-norm
            return self.norm2(x + self.mlp(x))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if arch.family == "vit":
                self.patch_embed = nn.Conv2d(arch.channels, d, arch.patch_size, arch.patch_size)
                self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
                self.pos_embed = nn.Parameter(torch.zeros(1, arch.vit_tokens, d))
            else:
                self.tok_embed = nn.Embedding(arch.vocab, d)
                self.pos_embed = nn.Embedding(arch.learned_positions, d) if arch.learned_positions else None
                self.type_embed = nn.Embedding(arch.type_vocab, d) if arch.type_vocab else None
            self.embed_norm = norm() if arch.family == "encoder" else None
            self.blocks = nn.ModuleList(Block() for _ in range(arch.layers))
            self.norm = norm() if arch.pre_norm else None
            if arch.family == "vit":
                self.head = nn.Linear(d, arch.num_classes)
            elif arch.family == "encoder":
                self.pooler = nn.Linear(d, d)
            else:
                self.head = nn.Linear(d, arch.vocab, bias=False)

        def tie(self) -> None:
            if arch.family == "decoder" and arch.tied_head:
                self.head.weight = self.tok_embed.weight

        def forward(self, inp):
            if arch.family == "vit":
                x = self.patch_embed(inp).flatten(2).transpose(1, 2)  # (B, 196, d)
                x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            else:
                x = self.tok_embed(inp)
                if self.pos_embed is not None:
                    x = x + self.pos_embed(torch.arange(inp.shape[1], device=inp.device))
                if self.type_embed is not None:
                    x = x + self.type_embed.weight[0]
                if self.embed_norm is not None:
                    x = self.embed_norm(x)
            causal = arch.family == "decoder"
            for block in self.blocks:
                x = block(x, causal)
            if self.norm is not None:
                x = self.norm(x)
            if arch.family == "vit":
                return self.head(x[:, 0])
            if arch.family == "encoder":
                return torch.tanh(self.pooler(x[:, 0]))
            return self.head(x)  # every position's logits: the workload's forward phase

    return Model


def _build_builtin(torch, name: str, device: str, tdt):
    """Built-in ``name`` on ``device`` in ``tdt``: built on the meta device, then allocated and
    filled (norms 1, biases 0, other weights N(0, 0.02))."""
    from .workloads import ARCHS

    arch = ARCHS.get(name)
    nn = torch.nn
    with torch.device("meta"):
        model = _builtin_module(torch, arch)().to(dtype=tdt)  # no fp32 copy is ever allocated
    model = model.to_empty(device=device)
    model.tie()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.LayerNorm) or type(mod).__name__ == "RMSNorm":
                mod.weight.fill_(1.0)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
            elif isinstance(mod, (nn.Linear, nn.Conv2d, nn.Embedding)):
                mod.weight.normal_(0.0, 0.02)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
        if arch.family == "vit":
            model.cls_token.normal_(0.0, 0.02)
            model.pos_embed.normal_(0.0, 0.02)
    return model.eval(), arch


def _check_memory(torch, device: str, params: int, tdt, what: str) -> None:
    need = params * torch.empty((), dtype=tdt).element_size()
    if device.startswith("cuda"):
        have = torch.cuda.mem_get_info(torch.device(device))[0]
    else:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.8 * have:
        raise ConfigError(f"--model {what}: {params:.3g} parameters need {need / 2**30:.3g} GiB of weights; "
                          f"{device} has {have / 2**30:.3g} GiB free")


def _user_input(torch, model, path: str):
    """How to feed a user's module: token ids for a first nn.Embedding, features for a first
    nn.Linear (registration order)."""
    nn = torch.nn
    first = next((m for m in model.modules() if isinstance(m, (nn.Embedding, nn.Linear, nn.Conv1d, nn.Conv2d,
                                                                 nn.Conv3d))), None)
    if isinstance(first, nn.Embedding):
        return "ids", first.num_embeddings
    if isinstance(first, nn.Linear):
        return "features", first.in_features
    raise ConfigError(f"--model {path!r}: cannot tell its input: measure feeds (batch, seq_len) token ids to a "
                      f"module whose first layer is an nn.Embedding, or (batch, seq_len, features) to one whose "
                      f"first layer is an nn.Linear; its first layer is "
                      f"{type(first).__name__ if first is not None else 'none'}")


def _sparsify(torch, model, tdt) -> tuple[int, str]:
    """Prune and compress the MLP and Q/K/V Linear weights of ``model`` in place (roles by
    name, ``sparsity.roles``); (layers made 2:4, kernel backend)."""
    from ..sparsity.roles import role_group, role_of

    nn = torch.nn
    targets = [(name, mod) for name, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and role_group(role_of(name)) in ("mlp", "qkv")]
    if not targets:
        raise ConfigError("no MLP or Q/K/V Linear layer recognised by name (sparsity.roles)")
    backend = ""
    for name, mod in targets:
        try:
            packed = _semi_structured(prune_2_4(mod.weight.detach().to(tdt)))
        except Exception as exc:  # noqa: BLE001 - a layer shape the kernels refuse
            raise ConfigError(f"layer {name} ({mod.out_features}x{mod.in_features}): {_one_line(exc)}") from None
        mod.weight = nn.Parameter(packed, requires_grad=False)
        backend = backend or _backend(packed)
    return len(targets), backend


def measure_model(name: str, *, device: str = "cpu", dtype: str = "fp32", batches=(1,), seq_lens=None,
                  timings=DEFAULT_TIMINGS, sparse: bool | None = None, decode: bool | None = None,
                  min_block_s: float = 0.02, blocks: int = 5, threads: int | None = None) -> dict:
    """Time the forward of model ``name`` (module docstring) at each batch x seq_len, dense and
    where possible 2:4. Returns ``{models, sparse, notes}``: ``models`` one row per (step,
    batch, seq_len, timing) with ``dense_s`` and ``sparse_s`` (None: not measured), ``sparse``
    the ``kind: model`` entries to write (built-in models with both times), notes to print."""
    import torch

    from .workloads import ARCHS, build_workload

    tdt, timings, ctx = _setup(torch, device, dtype, timings, threads)
    cuda = device.startswith("cuda")
    builtin = ":" not in name
    if builtin:
        if name not in ARCHS:
            raise ConfigError(f"--model {name!r}: unknown model; {_valid_models()}")
        arch = ARCHS.get(name)
        if arch.family not in MODEL_FAMILIES:
            raise ConfigError(f"--model {name!r}: measure does not build {arch.family} models (encoder-decoder) as "
                              f"torch modules; {_valid_models()}")
        if decode and arch.family != "decoder":
            raise ConfigError(f"--decode: {name} is an {arch.family} model; a decode step needs a decoder "
                              f"({', '.join(n for n in model_names() if ARCHS.get(n).family == 'decoder')})")
        seq_lens = tuple(seq_lens or (arch.vit_tokens if arch.family == "vit" else arch.default_seq_len,))
        decode = arch.family == "decoder" if decode is None else decode
        for b in batches:  # the simulator must take every shape measured (positions, fixed ViT tokens)
            for s in seq_lens + ((1,) if decode else ()):
                build_workload(name, batch=b, seq_len=s, dtype=dtype)
        fn = None
    else:
        fn = resolve_user_model(name)  # before any torch work: an untrusted path is refused here
        seq_lens = tuple(seq_lens or (USER_SEQ_LEN,))
        decode = bool(decode)
    notes: list[str] = []
    do_sparse = _sparse_plan(device, sparse, notes)
    if "kernel" in timings and not cuda:
        timings = tuple(t for t in timings if t != "kernel")
        notes.append("model kernel timing is a CUDA graph replay: none on the CPU"
                     + (f"; the model is timed {', '.join(timings)} only" if timings else "; no model time taken"))
    clock = _clock(torch, device)
    timer = _Timer(torch, device, min_block_s, blocks, clock)
    gen = torch.Generator(device="cpu").manual_seed(0)
    with ctx:
        if builtin:
            from .workloads import param_count

            _check_memory(torch, device, param_count(name), tdt, name)
            model, arch = _build_builtin(torch, name, device, tdt)

            def make_input(b: int, s: int):
                if arch.family == "vit":
                    return torch.randn(b, arch.channels, arch.image_size, arch.image_size, generator=gen).to(device, tdt)
                return torch.randint(0, arch.vocab, (b, s), generator=gen).to(device)
        else:
            try:
                model = fn()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - the user's factory failed: name it, keep one line
                raise ConfigError(f"--model {name!r} raised {_one_line(exc)}") from None
            if not isinstance(model, torch.nn.Module):
                raise ConfigError(f"--model {name!r} returned a {type(model).__name__}, not a torch nn.Module")
            model = model.to(device=device, dtype=tdt).eval()
            kind, size = _user_input(torch, model, name)

            def make_input(b: int, s: int):
                if kind == "ids":
                    return torch.randint(0, size, (b, s), generator=gen).to(device)
                return torch.randn(b, s, size, generator=gen).to(device, tdt)
        model.requires_grad_(False)
    with ctx, torch.inference_mode():
        shapes = [("forward", b, s) for b in batches for s in seq_lens] + [("decode", b, 1) for b in batches if decode]
        try:
            inputs = {shape: make_input(shape[1], shape[2]) for shape in shapes}
        except RuntimeError as exc:  # e.g. more memory than the device has
            raise ConfigError(f"--model {name!r}: cannot make its inputs of batch {max(batches)} x "
                              f"{max(seq_lens)} tokens ({_one_line(exc)})") from None
        if not builtin:
            try:
                model(inputs[shapes[0]])
            except Exception as exc:  # noqa: BLE001 - the user's module refused the input: one line
                raise ConfigError(f"--model {name!r}: its forward of a {tuple(inputs[shapes[0]].shape)} input raised "
                                  f"{_one_line(exc)}") from None
        rows = {}
        for shape in shapes:
            for timing in timings:
                t, how = timer.time(timing, lambda i, inp=inputs[shape]: model(inp), max_calls=MAX_GRAPH_FORWARDS,
                                    what="forwards")
                rows[shape + (timing,)] = {"dense_s": float(t), "how": how}
    backend = ""
    if do_sparse:
        try:
            with ctx, torch.no_grad():  # compressed outside inference mode, as the PyTorch 2:4 tutorial does
                layers, backend = _sparsify(torch, model, tdt)
        except ConfigError as exc:
            notes.append(f"{name}: no 2:4 model time: {exc}")
        else:
            with ctx, torch.inference_mode():
                for shape in shapes:
                    for timing in timings:
                        try:
                            t, how = timer.time(timing, lambda i, inp=inputs[shape]: model(inp),
                                                max_calls=MAX_GRAPH_FORWARDS, what="forwards")
                        except Exception as exc:  # noqa: BLE001 - e.g. a token count the 2:4 kernel refuses
                            notes.append(f"{name} {shape[0]} {shape[1]}x{shape[2]}: no 2:4 {timing} time ({_one_line(exc)})")
                            continue
                        rows[shape + (timing,)].update(sparse_s=float(t), sparse_how=how, layers=layers)
    prefix = f"pgf-sim measure --model ({device}, torch {torch.__version__}, random weights)"
    out, cases = [], []
    for (step_name, b, s, timing), r in rows.items():
        what = "forward" if step_name == "forward" else "decode-shaped step (forward of 1 token, no KV cache)"
        row = {"model": name, "step": step_name, "batch": b, "seq_len": s, "dtype": dtype, "timing": timing,
               "dense_s": r["dense_s"], "sparse_s": r.get("sparse_s"), "source": f"{prefix}: {what}; {r['how']}"}
        out.append(row)
        if builtin and r.get("sparse_s") is not None:
            cases.append({"name": f"{name} {what}, batch {b} x {s} tokens, 2:4 {backend} ({timing})", "kind": "model",
                          "model": name, "batch": b, "seq_len": s, "dtype": dtype, "dense_s": r["dense_s"],
                          "sparse_s": r["sparse_s"], "timing": timing,
                          "source": f"{prefix}: {what}; dense: {r['how']}; 2:4: MLP and Q/K/V weights ({r['layers']} "
                                    f"layers) pruned to 2:4 along K and compressed ({backend}), {r['sparse_how']}"})
    if out and not builtin:
        notes.append(f"{name}: times printed only (a user's module is not a built-in model the simulator can predict)")
    elif out and not cases:
        notes.append(f"{name}: dense model times printed only (the measurement format has no dense-only model entry)")
    return {"models": out, "sparse": cases, "notes": notes}
