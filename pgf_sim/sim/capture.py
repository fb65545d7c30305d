"""Capture any ``torch.nn.Module`` as a workload: its ops, shapes, data-flow graph and per-layer N:M.

Tracing never runs real arithmetic: ``torch.export`` fakifies parameters and inputs (a model built
on the ``meta`` device, too big for memory, traces the same way), and the fallback, used when
export cannot trace the model, is ``torch.fx``'s dispatcher-level tracer ``make_fx`` in fake
mode (it follows Python control flow that ``torch.fx.symbolic_trace`` cannot, and yields the same
ATen ops, so one classifier serves both). Both yield ATen nodes with shapes in ``node.meta["val"]``.

Each weight layer's N:M pattern is read from the weight values (pruned weights are zeros once a
sparse controller's masks are applied): for each candidate M dividing the reduction size, N is
the largest count of non-zeros in any group of M consecutive reduction elements; the sparsest
such N:M wins (ties: the smaller M), provided the groups hold N on average (a mask keeps exactly
N per group; unstructured zeros are not N:M). A weight that fits none is dense. ``patterns={module_name:
NM}`` overrides this (and is how meta-device models, which hold no values, get patterns).

A live sparse model (after ``sparsify()``, before ``finalize()``) is captured as deployed at its
current step: each weight under ``torch.nn.utils.parametrize`` is traced as a plain tensor, and a
parametrization that offers ``nm_deploy(weight) -> (tensor, NM)`` (the training side's recipe
weight does) gives that tensor (W*m with the current mask) and the layer's current pattern. The
live model is not touched; tracing runs on a structural copy that shares every tensor.

Mapping to ops (shapes as in ``ops.py``):
- ``linear`` / ``addmm`` / ``mm`` / ``matmul`` with a parameter operand -> weight GEMM,
  M = product of the leading dims; convolutions -> im2col GEMM (M = batch x output pixels,
  K = C_in/groups x kernel area, one product per group).
- ``matmul`` / ``bmm`` of activations, ``scaled_dot_product_attention`` -> activation matmuls
  (+ its softmax); element-wise ops, norms, softmax, embedding gathers -> element-wise ops.
- view/shape ops move no data in this model; anything else that produces a tensor is listed in
  ``workload.meta["unmodelled_ops"]`` (never silently dropped).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Mapping, Sequence

from ..core.errors import ConfigError, ShapeError
from ..core.pattern import DENSE, NM
from ..sparsity.roles import layer_name, role_of
from .ops import DTYPE_BITS, Op, Workload
from .workloads import FLOPS_PER_ELEMENT

DEFAULT_CANDIDATE_M = (4, 8, 16, 32, 64, 128, 256)
# mean non-zeros per group / N a weight needs to count as N:M (see infer_pattern)
CONSISTENT_FILL = 0.9

_FREE = {  # no data movement modelled (views, metadata, constants, RNG-free copies of shapes)
    "view", "reshape", "_unsafe_view", "permute", "transpose", "t", "expand", "unsqueeze", "squeeze",
    "select", "slice", "unbind", "split", "split_with_sizes", "chunk", "contiguous", "clone", "detach",
    "alias", "lift_fresh_copy", "_to_copy", "to", "type_as", "arange", "zeros", "ones", "full",
    "zeros_like", "ones_like", "full_like", "empty", "scalar_tensor", "flatten", "unflatten",
    "sym_size", "dropout", "native_dropout", "alias_copy", "view_as", "expand_as", "_assert_tensor_metadata",
    "lift", "copy", "getitem", "sym_numel", "empty_like", "tril", "triu", "masked_fill_",
}
# norm op -> (role, FLOPs-per-element key): batch/group norm with affine counted like LayerNorm
_NORMS = {"layer_norm": ("layernorm", "layernorm"), "native_layer_norm": ("layernorm", "layernorm"),
          "group_norm": ("groupnorm", "layernorm"), "native_group_norm": ("groupnorm", "layernorm"),
          "batch_norm": ("batchnorm", "layernorm"), "_native_batch_norm_legit_no_training": ("batchnorm", "layernorm"),
          "_native_batch_norm_legit_functional": ("batchnorm", "layernorm"), "rms_norm": ("rmsnorm", "rmsnorm"),
          "_fused_rms_norm": ("rmsnorm", "rmsnorm")}
_ELEMENTWISE = {"gelu", "relu", "silu", "sigmoid", "tanh", "softmax", "_softmax", "log_softmax", "_log_softmax",
                "add", "sub", "mul", "div", "where", "exp", "pow", "rsqrt", "sqrt", "neg", "mean", "sum",
                "cat", "stack", "embedding", "masked_fill", "max_pool2d", "max_pool2d_with_indices",
                "avg_pool2d", "adaptive_avg_pool2d", "adaptive_avg_pool1d", "_adaptive_avg_pool2d",
                "hardtanh", "leaky_relu", "clamp", "erf", "cos", "sin", "abs", "square", "amax", "maximum",
                "minimum", "rsub", "mish", "hardswish", "softplus", "index_select", "gather", "index", "cumsum"}
_ZERO_FLOP = {"cat", "stack", "embedding", "index_select", "gather", "index"}  # pure data movement
_CONV = {"conv1d", "conv2d", "conv3d", "convolution", "_convolution"}



def infer_pattern(weight, candidate_m: Sequence[int] = DEFAULT_CANDIDATE_M, *, reduction_dim: int = 1) -> NM:
    """The sparsest N:M the zero structure of ``weight`` satisfies along ``reduction_dim``.

    ``weight``: a torch tensor; Linear ``(out, in)`` with ``reduction_dim=1``, conv
    ``(out, in, *kernel)`` (groups of input channels at a fixed kernel position), or a weight used
    as ``x @ W`` with ``reduction_dim=0``.
    """
    import torch

    w = torch.movedim(weight.detach(), reduction_dim, -1)
    k = w.shape[-1]
    nonzero = (w != 0).reshape(-1, k)
    best = DENSE
    for m in sorted(candidate_m):
        if m < 2 or k % m or not nonzero.numel():
            continue
        per_group = nonzero.reshape(nonzero.shape[0], k // m, m).sum(-1)
        n = max(int(per_group.max()), 1)
        # An N:M mask keeps exactly N per group, so (nearly) every group holds N; an unstructured
        # sparse weight fits some loose N:M too (e.g. 39:64 at 50% random zeros) only through a
        # few outlier groups, which this consistency check rejects.
        if n < m and n / m < best.density and float(per_group.float().mean()) >= CONSISTENT_FILL * n:
            best = NM(n, m)
    return best


def _numel(shape) -> int:
    return math.prod(int(s) for s in shape)


class _Classifier:
    """Turns ATen graph nodes into ops; tracks which ops produced each node's data."""

    def __init__(self, params: dict[str, Any], patterns: dict[str, NM], roles: dict[str, str], dtype: str,
                 candidate_m) -> None:
        self.params = params            # placeholder node name -> (fqn, tensor)
        self.roles = roles              # weight layer name -> role (sparsity.roles.role_of)
        self.patterns = patterns
        self.dtype = dtype
        self.candidate_m = candidate_m
        self.ops: list[Op] = []
        self.edges: set[tuple[str, str]] = set()
        self.producers: dict[str, frozenset[str]] = {}
        self.names: Counter = Counter()
        self.unmodelled: Counter = Counter()
        self.inferred: dict[str, NM] = {}

    def _unique(self, name: str) -> str:
        self.names[name] += 1
        return name if self.names[name] == 1 else f"{name}#{self.names[name] - 1}"

    def _emit(self, node, op: Op) -> None:
        self.ops.append(op)
        for arg in node.all_input_nodes:
            self.edges.update((p, op.name) for p in self.producers.get(arg.name, ()))
        self.producers[node.name] = frozenset({op.name})

    def _pass_through(self, node) -> None:
        self.producers[node.name] = frozenset().union(*(self.producers.get(a.name, frozenset()) for a in node.all_input_nodes))

    def _weight(self, node):
        if getattr(node, "op", None) == "placeholder" and node.name in self.params:
            return self.params[node.name]
        return None

    def _pattern(self, module: str, weight, reduction_dim: int, k: int) -> NM:
        if module in self.patterns:
            p = self.patterns[module]
        elif weight.device.type == "meta":
            p = DENSE  # no values to read; pass patterns={...} for a meta model
        else:
            p = infer_pattern(weight, self.candidate_m, reduction_dim=reduction_dim)
            self.inferred[module] = p
        if not p.is_dense and k % p.m:
            raise ShapeError(f"layer {module}: reduction size {k} (weight {tuple(weight.shape)}) is not "
                             f"divisible by M={p.m} of pattern {p}")
        return p

    def gemm(self, node, weight_info, m: int, n: int, k: int, batch: int, reduction_dim: int, k_groups: int) -> None:
        fqn, tensor = weight_info
        module = layer_name(fqn)
        pattern = self._pattern(module, tensor, reduction_dim, k_groups)
        op = Op(self._unique(module), "gemm", m=m, n=n, k=k, batch=batch, pattern=pattern,
                dtype=self.dtype, role=self.roles.get(module, "other"))
        self._emit(node, op)

    def visit(self, node, scope: str) -> None:
        if node.op != "call_function":
            return
        target = node.target
        short = getattr(target, "__name__", str(target)).split(".")[0]
        if hasattr(target, "_schema"):
            short = target._schema.name.split("::")[-1]
        short = short.rstrip("_") if short.endswith("_") and short[:-1] in _ELEMENTWISE else short
        val = node.meta.get("val")
        args = node.args
        name = lambda base: self._unique(f"{scope}.{base}" if scope else base)  # noqa: E731
        if short == "linear":
            w = self._weight(args[1])
            n, k = (int(d) for d in args[1].meta["val"].shape)
            if w is None:  # F.linear with a computed (activation) matrix: never weight-sparse
                self._emit(node, Op(name("matmul"), "matmul", m=_numel(val.shape[:-1]), n=n, k=k,
                                    dtype=self.dtype, role="matmul"))
            else:
                self.gemm(node, w, _numel(val.shape[:-1]), n, k, 1, 1, k)
        elif short in _CONV and self._weight(args[1]) is None:
            self.unmodelled[f"{short} (non-parameter weight)"] += 1
            self._pass_through(node)
        elif short in _CONV:
            w = self._weight(args[1])
            # aten.conv2d(x, w, b, stride, padding, dilation, groups);
            # aten.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)
            at = 8 if short in ("convolution", "_convolution") else 6
            groups = int(args[at]) if len(args) > at else int(node.kwargs.get("groups", 1))
            wt = w[1]
            c_in_g, kernel = int(wt.shape[1]), _numel(wt.shape[2:])
            m = int(val.shape[0]) * _numel(val.shape[2:])
            self.gemm(node, w, m, int(wt.shape[0]) // groups, c_in_g * kernel, groups, 1, c_in_g)
        elif short in ("addmm", "mm", "matmul", "bmm", "baddbmm"):
            a, b = (args[1], args[2]) if short in ("addmm", "baddbmm") else (args[0], args[1])
            wa, wb = self._weight(a), self._weight(b)
            sa, sb = a.meta["val"].shape, b.meta["val"].shape
            k = int(sa[-1])
            out = val.shape
            m = int(out[-2]) if len(out) >= 2 else 1
            n = int(out[-1]) if len(sb) >= 2 else 1
            if wb is not None and len(sb) == 2:  # x @ W with W (K, N): groups along dim 0
                self.gemm(node, wb, _numel(out[:-1]), n, k, 1, 0, k)
            elif wa is not None and len(sa) == 2:  # W @ x with W (M, K): the weight is the left operand
                self.gemm(node, wa, n * _numel(out[:-2]), m, k, 1, 1, k)
            else:
                self._emit(node, Op(name("matmul"), "matmul", m=m, n=n, k=k, batch=_numel(out[:-2]),
                                    dtype=self.dtype, role="matmul"))
        elif short in ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
                       "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention_for_cpu"):
            q, k_, v = (x.meta["val"].shape for x in args[:3])
            bsz, heads, lq, e = _numel(q[:-3]), int(q[-3]), int(q[-2]), int(q[-1])
            kvh, s, ev = int(k_[-3]), int(k_[-2]), int(v[-1])
            g = heads // kvh
            score = Op(name("attn_score"), "matmul", m=g * lq, n=s, k=e, batch=bsz * kvh, dtype=self.dtype, role="attn_score")
            soft = Op(name("softmax"), "elementwise", elements=bsz * heads * lq * s,
                      flops_per_element=FLOPS_PER_ELEMENT["softmax"], dtype=self.dtype, role="softmax")
            av = Op(name("attn_av"), "matmul", m=g * lq, n=ev, k=s, batch=bsz * kvh, dtype=self.dtype, role="attn_av")
            self._emit(node, score)
            self.ops.append(soft)
            self.edges.add((score.name, soft.name))
            self.ops.append(av)
            self.edges.add((soft.name, av.name))
            self.producers[node.name] = frozenset({av.name})
        elif short in _NORMS or short in _ELEMENTWISE:
            role, flops_key = _NORMS.get(short, (short.lstrip("_"), short.lstrip("_")))
            out = val[0] if isinstance(val, (tuple, list)) else val
            elements = _numel(out.shape)
            tensor_inputs = [a for a in node.all_input_nodes if self._weight(a) is None and hasattr(a.meta.get("val"), "shape")]
            inputs = max(1, sum(1 for a in tensor_inputs if _numel(a.meta["val"].shape) >= elements))
            if short in ("mean", "sum", "amax") or "pool" in short:  # reductions read the larger input
                elements = max([elements] + [_numel(a.meta["val"].shape) for a in tensor_inputs])
            flops = 0.0 if short in _ZERO_FLOP else FLOPS_PER_ELEMENT.get(flops_key, 1.0)
            self._emit(node, Op(name(role), "elementwise", elements=elements, flops_per_element=flops,
                                inputs=inputs, dtype=self.dtype, role=role))
        else:
            produces = hasattr(val, "shape") or (isinstance(val, (tuple, list)) and any(hasattr(v, "shape") for v in val))
            if short not in _FREE and produces:  # e.g. an LSTM: listed, never dropped silently
                self.unmodelled[short] += 1
            self._pass_through(node)


def _scope(node) -> str:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    fqn = list(stack.values())[-1][0]
    return fqn if isinstance(fqn, str) else ""


def _example(module, example_inputs) -> tuple:
    import torch

    tensors = list(module.parameters()) + list(module.buffers())
    device = tensors[0].device if tensors else torch.device("cpu")
    if isinstance(example_inputs, torch.Tensor) or (
        isinstance(example_inputs, (tuple, list)) and example_inputs and all(isinstance(s, int) for s in example_inputs)
    ):
        example_inputs = (example_inputs,)
    out = []
    for x in example_inputs:
        if isinstance(x, torch.Tensor):
            # meta inputs for a meta model; otherwise keep the tensor (tracing fakifies it anyway)
            out.append(x.to("meta") if device.type == "meta" else x)
        elif isinstance(x, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in x):
            out.append(torch.zeros(tuple(x), device=device))
        else:
            raise ConfigError(f"example input {x!r}: give a tensor or a shape tuple of ints")
    return tuple(out)


def _deployed_view(module) -> tuple[Any, dict[str, NM]]:
    """(``module`` itself, {}) if nothing is parametrized; else (a copy sharing every parameter and
    buffer in which each parametrized tensor is a plain, frozen Parameter holding its deployed
    value, {layer name: current N:M} for parametrizations that report one). Layer names follow
    ``weight_params``: the module name for ``weight``, ``<module>.<param>`` otherwise."""
    import copy

    import torch
    from torch.nn.utils import parametrize

    live = [(name, sub) for name, sub in module.named_modules() if parametrize.is_parametrized(sub)]
    if not live:
        return module, {}
    # share tensors and the parametrization objects themselves; copy only the module structure
    shared = [*module.parameters(), *module.buffers()]
    shared += [p for _, sub in live for plist in sub.parametrizations.values() for p in plist]
    clone = copy.deepcopy(module, memo={id(t): t for t in shared})
    patterns: dict[str, NM] = {}
    for name, sub in live:
        twin = clone.get_submodule(name)
        # parametrize gives each module a class of its own that holds the tensor properties, and
        # the copy shares that class, so un-parametrize the copy by hand (remove_parametrizations
        # would delete the properties from the live module's class too)
        twin.__class__ = type(sub).__bases__[0]
        del twin._modules["parametrizations"]
        for param, plist in sub.parametrizations.items():
            deploy = getattr(plist[0], "nm_deploy", None) if len(plist) == 1 else None
            with torch.no_grad():
                if deploy is not None:
                    value, pattern = deploy(plist.original)
                    patterns[name if param == "weight" else (f"{name}.{param}" if name else param)] = pattern
                else:
                    value = getattr(sub, param)
            twin.register_parameter(param, torch.nn.Parameter(value.detach(), requires_grad=False))
    return clone, patterns


def _trace_export(module, inputs):
    import torch

    ep = torch.export.export(module, inputs, strict=False)
    sig = ep.graph_signature
    named = dict(module.named_parameters(remove_duplicate=False))
    named.update(dict(module.named_buffers(remove_duplicate=False)))
    mapping = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    params = {ph: (fqn, named[fqn]) for ph, fqn in mapping.items() if fqn in named}
    return ep.graph, params


def _trace_make_fx(module, inputs):
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}

    def run(state, *xs):
        return torch.func.functional_call(module, state, xs)

    gm = make_fx(run, tracing_mode="fake", pre_dispatch=True)(state, *inputs)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    params = {ph.name: item for ph, item in zip(placeholders, state.items())}  # pytree keeps dict order
    return gm.graph, params


def capture(module, example_inputs, *, patterns: Mapping[str, NM | str] | None = None,
            candidate_patterns: Sequence[int] | None = None, dtype: str = "fp16",
            method: str = "auto", name: str | None = None) -> Workload:
    """Ops, graph and per-layer N:M of ``module`` run on ``example_inputs``.

    example_inputs: a tensor, a shape tuple, or a tuple of those (shapes become zeros on the
    module's device; a meta-device module gets meta inputs). ``patterns``: ``{module_name: NM}``
    overrides the patterns read from the weights. ``candidate_patterns``: the group sizes M to
    try (default 4..256). ``method``: ``export``, ``fx`` (make_fx) or ``auto`` (export, then fx).
    """
    import torch

    if dtype not in DTYPE_BITS:
        raise ConfigError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPE_BITS)}")
    if method not in ("auto", "export", "fx"):
        raise ConfigError(f"unknown capture method {method!r}; valid: auto, export, fx")
    # the same layer names and roles the training side uses (fc1, fc2, qkv, ... or "other")
    roles = {layer_name(n): role_of(layer_name(n)) for n, p in module.named_parameters() if p.dim() >= 2}
    patterns = {k: NM.parse(v) for k, v in (patterns or {}).items()}
    unknown = sorted(set(patterns) - set(roles) - {n for n, _ in module.named_modules()})
    if unknown:
        raise ConfigError(f"patterns given for unknown layers {unknown}; weight layers: {sorted(roles)}")
    inputs = _example(module, example_inputs)
    module, live_patterns = _deployed_view(module)
    patterns = {**live_patterns, **patterns}
    was_training = module.training
    module.eval()  # inference graph: no dropout, batch norm with running statistics
    # Hugging Face decoders return a KV-cache object (DynamicCache) by default (config.use_cache),
    # which neither tracer can return: capture one forward without it (a decode step with a KV
    # cache is `simulate --phase decode` on a built-in architecture), restored afterwards.
    config = getattr(module, "config", None)
    cache_off = bool(getattr(config, "use_cache", False))
    if cache_off:
        config.use_cache = False
    try:
        with torch.no_grad():
            if method == "fx":
                graph, params, used = *_trace_make_fx(module, inputs), "fx"
            else:
                try:
                    graph, params, used = *_trace_export(module, inputs), "export"
                except Exception as exc:  # noqa: BLE001 - export fails in many ways; fx is the documented fallback
                    if method == "export":
                        raise
                    graph, params, used = *_trace_make_fx(module, inputs), f"fx (export failed: {type(exc).__name__})"
    finally:
        module.train(was_training)
        if cache_off:
            config.use_cache = True
    cls = _Classifier(params, patterns, roles, dtype, tuple(candidate_patterns or DEFAULT_CANDIDATE_M))
    for node in graph.nodes:
        cls.visit(node, _scope(node))
    import networkx as nx

    g = nx.DiGraph()
    for op in cls.ops:
        g.add_node(op.name, kind=op.kind, role=op.role)
    g.add_edges_from(cls.edges)
    batch = int(inputs[0].shape[0]) if inputs and inputs[0].dim() else 1
    meta = {"model": name or type(module).__name__, "batch": batch, "phase": "forward", "dtype": dtype,
            "capture": used, "input_shapes": [list(x.shape) for x in inputs],
            "params": sum(p.numel() for p in module.parameters()),
            "patterns": {op.name: "dense" if op.pattern.is_dense else str(op.pattern) for op in cls.ops if op.kind == "gemm"},
            "unmodelled_ops": dict(cls.unmodelled)}
    if cache_off:
        meta["note"] = "config.use_cache was set to False for the capture (a forward without returning a KV cache)"
    pats = {op.pattern for op in cls.ops if op.kind == "gemm" and not op.pattern.is_dense}
    meta["pattern"] = "dense" if not pats else ("mixed" if len(pats) > 1 else str(next(iter(pats))))
    return Workload(meta["model"], cls.ops, meta, g)
