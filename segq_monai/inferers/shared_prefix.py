"""Shared-prefix MC dropout: split a network where randomness starts, so the part before it runs once.

When dropout sits late in a network (before the output convolution, or in the decoder's last stages), every
activation that depends on no active dropout module is the same in all T samples. :func:`split_at_dropout` traces
the network with ``torch.fx`` and cuts it into a deterministic ``prefix`` and a stochastic ``remainder`` that draws
its random numbers in the network's own order, so sampled maps equal those of full passes for the same seed.
The 1×1 convolutions of the stochastic part run as matrix products, and whole-channel dropout
(``nn.Dropout1d/2d/3d``) feeding one, the usual last-layer MC dropout, is folded into its weights
(:class:`PointwiseConv`): the same mask, without writing the masked feature map.
"""

from __future__ import annotations

import itertools
import operator
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from segq_monai.inferers.modes import dropout_modules, network_modes

__all__ = ["PointwiseConv", "SharedPrefix", "network_fingerprint", "split_at_dropout"]


class SharedPrefix(NamedTuple):
    """A network split where randomness starts: ``remainder(*prefix(x)) == network(x)``, same random draws.

    ``prefix`` takes the network's arguments and computes, without drawing random numbers, every activation that
    depends on no active dropout module; it returns the frontier: the tuple of those activations the rest reads
    (with skip connections, several, e.g. encoder features). ``remainder`` takes the frontier and runs the rest,
    every random operation in the network's own order; its 1×1 convolutions run as matrix products, with the
    whole-channel dropout before one folded into it (:class:`PointwiseConv`: the same mask; equal up to rounding).
    """

    prefix: fx.GraphModule
    remainder: fx.GraphModule


#: Functions and tensor methods that draw random numbers: the nodes that call them belong to the stochastic part.
_RANDOM_FUNCTIONS = frozenset(
    {
        F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, F.rrelu,
        F.gumbel_softmax, torch.dropout, torch.alpha_dropout, torch.feature_dropout, torch.bernoulli, torch.rand,
        torch.rand_like, torch.randn, torch.randn_like, torch.randint, torch.randint_like, torch.randperm,
        torch.normal, torch.poisson, torch.multinomial,
    }
)  # fmt: skip
_RANDOM_METHODS = frozenset(
    {"bernoulli", "bernoulli_", "cauchy_", "exponential_", "geometric_", "log_normal_", "multinomial", "normal_",
     "random_", "uniform_"}
)  # fmt: skip
_INPLACE_OPERATORS = frozenset(
    {
        operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
        operator.ipow, operator.iand, operator.ior, operator.ixor, operator.ilshift, operator.irshift,
        operator.imatmul, operator.setitem,
    }
)  # fmt: skip
#: Operations known to return a new tensor (never a view or their input itself).
_FRESH_MODULES = (
    nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.Upsample,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)  # fmt: skip
_FRESH_FUNCTIONS = frozenset(
    {
        torch.cat, torch.concat, torch.stack, operator.add, operator.sub, operator.mul, operator.truediv,
        operator.matmul, operator.neg, torch.add, torch.sub, torch.mul, torch.div, torch.matmul, torch.sigmoid,
        torch.tanh, torch.softmax, F.softmax, F.interpolate, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d,
        F.conv_transpose2d, F.conv_transpose3d, F.linear, F.relu, F.leaky_relu, F.prelu, F.elu, F.gelu, F.silu,
    }
)  # fmt: skip
_FRESH_METHODS = frozenset({"add", "sub", "mul", "div", "matmul", "clone", "sigmoid", "tanh", "softmax", "relu"})


def _is_random(node: fx.Node, modules: dict[str, nn.Module], active: set[int]) -> bool:
    if node.op == "call_module":
        return any(id(m) in active for m in modules[node.target].modules())
    if node.op == "call_function":
        return node.target in _RANDOM_FUNCTIONS
    return node.op == "call_method" and node.target in _RANDOM_METHODS


def _is_inplace(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` may write into its first argument."""
    if node.op == "call_module":
        return any(getattr(m, "inplace", False) is True for m in modules[node.target].modules())
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return (
            node.target in _INPLACE_OPERATORS
            or node.kwargs.get("inplace") is True
            or (name.endswith("_") and not name.endswith("__"))
        )
    return False


def _is_fresh(node: fx.Node, modules: dict[str, nn.Module], active: set[int]) -> bool:
    """Whether ``node`` surely returns a new tensor, neither its input nor a view of it."""
    if _is_inplace(node, modules):
        return False
    if node.op == "call_module":
        m = modules[node.target]
        return id(m) in active or isinstance(m, _FRESH_MODULES) or type(m).__module__ == "torch.nn.modules.activation"
    if node.op == "call_function":
        return node.target in _FRESH_FUNCTIONS
    return node.op == "call_method" and node.target in _FRESH_METHODS


def _may_write_shared(node: fx.Node, stochastic: set[fx.Node], modules: dict[str, nn.Module], active: set[int]) -> bool:
    """Whether the in-place ``node`` of the stochastic part may write into (a view of) a deterministic tensor."""
    stack: list[Any] = list(node.args[:1])
    seen: set[fx.Node] = set()
    while stack:
        target = stack.pop()
        if isinstance(target, (list, tuple)):
            stack.extend(target)
        elif isinstance(target, fx.Node) and target not in seen:
            seen.add(target)
            if target not in stochastic:
                return True
            if not _is_fresh(target, modules, active):
                stack.extend(target.args[:1])
    return False


def _computes(node: fx.Node) -> bool:
    """Whether ``node`` does work worth sharing (not a placeholder, an attribute, a shape or an item)."""
    if node.op == "call_module":
        return True
    if node.op == "call_function":
        return node.target not in (getattr, operator.getitem)
    return node.op == "call_method" and node.target not in ("size", "dim")


def _describe(value: Any) -> Any:
    return (tuple(value.shape), value.dtype, value.device) if isinstance(value, torch.Tensor) else value


class _OpRecorder(TorchDispatchMode):
    """Records every ATen operation run inside it: the operator, tensor arguments as shape/dtype/device."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Any] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops.append((func, tree_map(_describe, (args, kwargs))))
        return func(*args, **kwargs)


@contextmanager
def _hooks_off(network: nn.Module) -> Iterator[None]:
    """Detach every module's forward (pre-)hooks for the block, so that a check pass does not call them."""
    saved = [(m, m._forward_hooks, m._forward_pre_hooks) for m in network.modules()]
    try:
        for m, _, _ in saved:
            m._forward_hooks, m._forward_pre_hooks = OrderedDict(), OrderedDict()
        yield
    finally:
        for m, hooks, pre_hooks in saved:
            m._forward_hooks, m._forward_pre_hooks = hooks, pre_hooks


def _aten_ops(fn: Callable[..., Any], inputs: torch.Tensor, args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
    """The ATen operations ``fn(inputs, *args, **kwargs)`` runs, on fake tensors: no computation, no random draw."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    devices = [inputs.device] if inputs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = mode.from_tensor(inputs)
        with _OpRecorder() as recorder:
            fn(fake, *args, **kwargs)
    return recorder.ops


def split_at_dropout(
    network: nn.Module,
    inputs: torch.Tensor | None = None,
    dropout: Sequence[nn.Module] | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
) -> SharedPrefix:
    """Split ``network`` with ``torch.fx`` into the part that precedes every dropout module and the rest.

    The graph is traced with only ``dropout`` (default: :func:`dropout_modules`) in train mode, the modes MC
    dropout runs in. A node is stochastic when it calls one of ``dropout`` (or a module holding one), calls a
    random function, or reads a stochastic node; every other node the stochastic part needs goes to the prefix.
    The prefix therefore draws no random numbers, and the remainder draws them in the network's own order: run
    under the same seed, ``remainder(*prefix(x))`` repeated gives the same samples as ``network(x)`` repeated.

    torch.fx traces Python control flow with symbolic values and can silently take another branch than the
    network does (MONAI's ``BasicUNet`` tests ``torch.jit.isinstance(x_e, torch.Tensor)``, false for a traced
    value, and drops its skip connections). Given ``inputs``, the traced graph and the network are therefore
    both run on fake tensors of that shape (no computation, no random draw, forward hooks detached) and must
    run the same ATen operations on the same shapes, in the same order.

    Args:
        network: the network, e.g. a MONAI ``UNet`` with dropout only in its last decoder stages.
        inputs: an example input ``[B, C_in, *spatial]`` for the check above; ``None`` skips the check.
        dropout: the modules MC dropout switches to train mode.
        args, kwargs: further arguments of the network, for the check.

    Raises:
        ValueError: naming the reason, when the network cannot be split: it does not trace (data-dependent
            control flow; forward hooks on a traced-through module, which torch.fx drops), the graph runs other
            operations than the network, the output does not depend on ``dropout``, nothing but the input
            precedes the first dropout, or an in-place operation may write into a shared tensor.

    Note:
        torch.fx patches ``torch.nn.Module`` while it traces: do not run other networks in other threads then.
    """
    dropout = dropout_modules(network) if dropout is None else list(dropout)
    kwargs = kwargs or {}
    name = type(network).__name__
    tracer = fx.Tracer()
    for qualname, m in network.named_modules():
        if (m._forward_hooks or m._forward_pre_hooks) and (m is network or not tracer.is_leaf_module(m, qualname)):
            raise ValueError(f"{name} has forward hooks on {qualname or 'itself'}, which torch.fx tracing drops.")
    hooks = torch.nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        raise ValueError("global forward hooks are registered, which torch.fx tracing drops.")
    with network_modes(network, train=dropout):
        try:
            graph = tracer.trace(network)
        except Exception as e:  # torch.fx raises many types: TraceError, TypeError, NotImplementedError, ...
            raise ValueError(f"{name} cannot be traced by torch.fx ({type(e).__name__}: {e})") from e
        if inputs is not None:
            traced = fx.GraphModule(network, graph)
            with _hooks_off(network):
                try:
                    expected = _aten_ops(network, inputs, args, kwargs)
                except Exception as e:  # an operation without a fake-tensor rule, data-dependent control flow
                    raise ValueError(f"{name} could not be run on fake tensors ({type(e).__name__}: {e})") from e
                try:
                    same = _aten_ops(traced, inputs, args, kwargs) == expected
                except Exception as e:
                    raise ValueError(
                        f"the torch.fx graph of {name} is wrong: it fails where the network runs ({type(e).__name__}: {e})"
                    ) from e
            if not same:
                raise ValueError(f"the torch.fx graph of {name} is wrong: it runs other operations than the network.")
    modules = dict(network.named_modules())
    active = {id(m) for m in dropout}
    nodes = list(graph.nodes)
    stochastic: set[fx.Node] = set()
    for node in nodes:
        if node.op != "output" and (
            _is_random(node, modules, active) or any(a in stochastic for a in node.all_input_nodes)
        ):
            stochastic.add(node)
    output = graph.output_node()
    if not any(a in stochastic for a in output.all_input_nodes):
        raise ValueError(f"the output of {name} depends on no active dropout module.")
    frontier = [
        n for n in nodes
        if n not in stochastic and n.op not in ("output", "get_attr")
        and any(u in stochastic or u is output for u in n.users)
    ]  # fmt: skip
    needed: set[fx.Node] = set()
    stack = list(frontier)
    while stack:
        node = stack.pop()
        if node not in needed:
            needed.add(node)
            stack.extend(node.all_input_nodes)
    if not any(_computes(n) for n in needed):
        raise ValueError(f"a dropout module of {name} acts on the input: no computation precedes it.")
    for node in nodes:
        if node in stochastic and _is_inplace(node, modules) and _may_write_shared(node, stochastic, modules, active):
            raise ValueError(f"{node.format_node()} may write in place into a tensor of the part before dropout.")
    first = min(i for i, n in enumerate(nodes) if n in stochastic)
    for node in nodes[first:]:
        if node in needed and _is_inplace(node, modules):
            raise ValueError(f"{node.format_node()} writes in place after the first dropout, into a shared tensor.")

    prefix, env = fx.Graph(), {}
    for node in nodes:
        if node.op == "placeholder" or node in needed:
            env[node] = prefix.node_copy(node, env.__getitem__)
    prefix.output(tuple(env[n] for n in frontier))
    remainder, env = fx.Graph(), {}
    for node in frontier:
        env[node] = remainder.placeholder(node.name)
    for node in nodes:
        if node in stochastic or node is output:
            for a in node.all_input_nodes:
                if a.op == "get_attr" and a not in env:
                    env[a] = remainder.node_copy(a)
            env[node] = remainder.node_copy(node, env.__getitem__)
    remainder_module = fx.GraphModule(network, remainder, class_name=f"{name}Remainder")
    _pointwise_convs(remainder_module, active)
    return SharedPrefix(fx.GraphModule(network, prefix, class_name=f"{name}Prefix"), remainder_module)


class PointwiseConv(nn.Module):
    """A 1×1 convolution run as a batched matrix product, optionally with the whole-channel dropout before it folded
    into its weights.

    ``conv(x)`` of a 1×1 convolution (weight ``W`` ``[K, C]``, bias ``b``) is ``W x + b`` at every voxel: one
    ``torch.bmm`` over the flattened voxels, which on CPUs is many times faster than the convolution kernel
    (``[1, 16, 96³]``: 4 ms against 36 ms on 2 cores). With ``dropout`` (an ``nn.Dropout1d/2d/3d``: mask ``m``
    ``[B, C]``, kept channels scaled by ``1 / (1 - p)``), ``conv(dropout(x))`` is computed as ``(W * m / (1 - p)) x
    + b``: the masked feature map ``[B, C, *spatial]`` is never written. The mask is drawn by ``dropout`` itself on
    a ``[B, C, 1, ...]`` tensor of ones, the shape of the noise it draws for ``x``, so the random numbers are the
    same. Results equal the modules' up to floating-point rounding.
    """

    def __init__(self, conv: nn.Module, dropout: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, *spatial]`` -> ``[B, K, *spatial]``."""
        b, c, *spatial = x.shape
        weight = self.conv.weight.flatten(1).unsqueeze(0)  # [1, K, C]
        if self.dropout is not None:
            scale = self.dropout(x.new_ones(b, c, *([1] * len(spatial))))  # [B, C, 1, ...]: m / (1 - p)
            weight = weight * scale.view(b, 1, c)
        out = torch.matmul(weight.to(x.dtype), x.reshape(b, c, -1))  # [B, K, N]
        if self.conv.bias is not None:
            out = out + self.conv.bias.to(out.dtype).view(1, -1, 1)
        return out.view(b, -1, *spatial)


def _pointwise_conv(m: nn.Module) -> bool:
    """Whether ``m`` is a plain 1×1 convolution: ``conv(x) = W x + b`` at every voxel."""
    return (
        type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d)
        and all(k == 1 for k in m.kernel_size) and all(s == 1 for s in m.stride)
        and all(d == 1 for d in m.dilation) and m.groups == 1 and m.padding_mode == "zeros"
        and (m.padding == "valid" or all(q == 0 for q in m.padding))
    )  # fmt: skip


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _pointwise_convs(remainder: fx.GraphModule, active: set[int]) -> None:
    """Run every 1×1 convolution of ``remainder`` as a :class:`PointwiseConv`, with an active ``nn.Dropout1d/2d/3d``
    whose only user it is folded in; in place. Modules with forward hooks are left alone (the hooks would not run).
    """
    modules = dict(remainder.named_modules())
    for node in list(remainder.graph.nodes):
        conv = modules.get(node.target) if node.op == "call_module" else None
        if conv is None or not _pointwise_conv(conv) or _hooked(conv) or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        drop = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        fold = (
            type(drop) in (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d) and id(drop) in active and not _hooked(drop)
            and len(source.users) == 1 and len(source.args) == 1 and not source.kwargs
        )  # fmt: skip
        name = f"{node.target.replace('.', '_')}_pointwise"
        remainder.add_submodule(name, PointwiseConv(conv, drop if fold else None))
        node.target = name
        if fold:
            node.args = source.args
            remainder.graph.erase_node(source)
    remainder.graph.lint()
    remainder.recompile()


def network_fingerprint(network: nn.Module, dropout: Sequence[nn.Module], inputs: torch.Tensor) -> tuple[Any, ...]:
    """What a split of ``network`` depends on: modules, their plain attributes, tensors, hooks, the input's kind."""
    plain = (bool, int, float, str, type(None))
    modules = tuple(
        (
            qualname, id(m), len(m._forward_hooks), len(m._forward_pre_hooks),
            tuple((k, v) for k, v in vars(m).items() if isinstance(v, plain) and k != "training"),
        )
        for qualname, m in network.named_modules()
    )  # fmt: skip
    tensors = tuple((k, id(t)) for k, t in itertools.chain(network.named_parameters(), network.named_buffers()))
    return modules, tensors, tuple(map(id, dropout)), inputs.ndim, inputs.dtype, inputs.device
