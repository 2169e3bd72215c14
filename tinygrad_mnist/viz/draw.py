"""The drawing half of the graph drawer: what each node says, its colours, the boxes, and
rendering with graphviz's `dot`. Which nodes, edges and boxes there are comes from `graph.py`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import graphviz
import numpy as np

from .. import ops
from ..files import write_atomically
from ..nn.module import Module
from ..tensor import Tensor
from .graph import (
    Edge,
    Graph,
    ModuleCall,
    boxed_calls,
    buffer_names,
    collapsed_calls,
    drawn_edges,
    drawn_nodes,
    is_leaf_module,
    module_calls,
    module_names,
    named_tensors,
    node_keys,
    owners,
    parameter_names,
    reaching,
    walk,
)

__all__ = ["GraphvizNotFoundError", "draw_graph", "render"]

SMALL = 6  # tensors with at most this many elements show their values in the label
FORMATS = ("svg", "png", "pdf")
RANKDIRS = ("TB", "LR", "BT", "RL")

# colours: one per kind of node, plus the states that must stand out
OP_FILL = "#eef0f3"
PARAM_FILL = "#d6e9ff"
BUFFER_FILL = "#dff3e4"  # a module's buffer (BatchNorm's running statistics): state, not trained
INPUT_FILL = "#fff4c2"
MODULE_FILL = "#e8e0ff"
ROOT_FILL = "#ffcf99"
BORDER = "#4a5160"
NONFINITE = "red"
NONFINITE_FILL = "#ffd0d0"
HIGHLIGHT = "#0a9b4a"
SHADE_MAX = (0xF0, 0x8A, 0x24)  # the fill of the largest gradient norm when shade_by_grad


class GraphvizNotFoundError(RuntimeError):
    """The graphviz `dot` program, needed to render a graph to a file, is not installed."""


# ---------------------------------------------------------------- formatting text

# repr noise of the layers' defaults, dropped from box and collapsed-node labels
_DEFAULT_NOISE = (
    ", stride=1",
    ", eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True",
    ", padding=0, dilation=1, ceil_mode=False",
    ", padding=0",
    ", inplace=False",
    ", bias=True",
    "start_dim=1, end_dim=-1",
    "in_features=",
    "out_features=",
)


def short_repr(module: Module) -> str:
    """`Conv2d(1, 8, kernel_size=3)`: the layer's repr with square pairs and defaults folded;
    just the class name for a container."""
    if not is_leaf_module(module):
        return type(module).__name__
    text = re.sub(r"\((\d+), \1\)", r"\1", f"{type(module).__name__}({module.extra_repr()})")
    for noise in _DEFAULT_NOISE:
        text = text.replace(noise, "")
    return text


def _call_label(call: ModuleCall) -> str:
    """`0: Conv2d(1, 8, kernel_size=3)`, or without the name when params did not name it."""
    return f"{call.name}: {short_repr(call.module)}" if call.name else short_repr(call.module)


def _fmt(value) -> str:
    """A number in at most 4 significant digits."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.4g}"


def _values(array: np.ndarray, limit: int = SMALL) -> str:
    """`[1, 2, 3]`: the values, or the first and last few of a bigger array, on one line."""
    flat = array.ravel()
    if flat.size > limit:
        head = ", ".join(_fmt(v) for v in flat[: limit // 2])
        tail = ", ".join(_fmt(v) for v in flat[-(limit // 2) :])
        return f"[{head}, ..., {tail}]"
    if array.ndim == 0:
        return _fmt(array.item())
    text = np.array2string(array, separator=", ", formatter={"all": _fmt})
    return text.replace("\n", "")


def _shape_text(tensor: Tensor) -> str:
    return "scalar" if tensor.ndim == 0 else str(tuple(tensor.shape))


def _pair_text(pair) -> str:
    pair = tuple(pair) if isinstance(pair, (tuple, list)) else (pair, pair)
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _attr_text(name: str, value) -> str:
    """One op attribute as shown under the op name."""
    if isinstance(value, np.ndarray):
        return f"{name} {_values(value)}" if value.size <= SMALL else f"{name} {value.shape}"
    text = repr(value)
    return f"{name}={text if len(text) <= 24 else text[:21] + '...'}"


# the operator of the arithmetic ops, shown next to their name: "Mul (*)"
_SYMBOLS: dict[type[ops.Op], str] = {
    ops.Add: "+",
    ops.Sub: "-",
    ops.Mul: "*",
    ops.Div: "/",
    ops.Neg: "-x",
    ops.MatMul: "@",
}


def _symbol(op: ops.Op) -> str | None:
    """The operator of an arithmetic op, found by class, so a kernel subclass shares it."""
    return next((_SYMBOLS[c] for c in type(op).__mro__ if c in _SYMBOLS), None)


def _kernel(op: ops.Op) -> str | None:
    """The name of the fast kernel that ran the op, or None for the textbook implementation."""
    return None if op.kernel == ops.Op.kernel else str(op.kernel)


def _op_details(tensor: Tensor) -> str:
    """The op's attributes: kernel/stride/padding for conv and pool, axis and friends else."""
    op = tensor.op
    if op is None:  # a leaf
        return ""
    attrs = dict(op.attrs)
    if isinstance(op, ops.Conv2d):
        kernel = tensor.parents[1].shape[2:]
        return (
            f"kernel {_pair_text(kernel)}  stride {_pair_text(attrs['stride'])}  "
            f"padding {_pair_text(attrs['padding'])}"
        )
    if isinstance(op, ops.MaxPool2d):
        return f"kernel {_pair_text(attrs['kernel_size'])}  stride {_pair_text(attrs['stride'])}"
    shown = [
        _attr_text(k, v)
        for k, v in attrs.items()
        if v is not None and not (k == "keepdims" and not v) and not (k == "shape")
    ]
    return "  ".join(shown)


def _grad_lines(grad: np.ndarray) -> list[str]:
    """Label lines for a gradient: `grad 0.5` for one element, else its L2 norm, largest
    magnitude and share of exact zeros: `grad norm N`, `absmax M  zeros Z%`."""
    if grad.size == 1:
        return [f"grad {_fmt(grad.reshape(()).item())}"]
    g = grad.astype(np.float64, copy=False)
    norm = float(np.sqrt(np.sum(g * g)))
    absmax = float(np.max(np.abs(g))) if g.size else 0.0
    zeros = 100.0 * float(np.mean(g == 0)) if g.size else 0.0
    return [f"grad norm {_fmt(norm)}", f"absmax {_fmt(absmax)}  zeros {zeros:.1f}%"]


def _is_nonfinite(array: np.ndarray | None) -> bool:
    return array is not None and array.dtype.kind == "f" and not bool(np.isfinite(array).all())


class _LeafNames(dict):
    """id(tensor) -> name of the parameters and buffers; `.buffers` those that are buffers."""

    buffers: dict[int, str] = {}


def _is_buffer(tensor: Tensor, buffers: dict[int, str]) -> bool:
    """A module's buffer, or a constant a layer computed from one and named after it (BatchNorm
    in eval mode: `running_mean`, `1/sqrt(running_var + eps)`)."""
    if id(tensor) in buffers:
        return True
    if tensor.requires_grad or not tensor.name:
        return False
    local = {name.rsplit(".", 1)[-1] for name in buffers.values()}
    return any(name in str(tensor.name) for name in local)


def _leaf_name(tensor: Tensor, names: dict[int, str]) -> str:
    """The parameter name, else the user's name, else what kind of leaf it is."""
    if id(tensor) in names:
        return names[id(tensor)]
    if tensor.name:
        return str(tensor.name)
    if tensor.requires_grad:
        return "leaf"
    return "constant" if tensor.data.size == 1 else "input"


def _stats(array: np.ndarray) -> str:
    if array.size == 0 or array.dtype.kind not in "fiu":
        return ""
    a = array.astype(np.float64, copy=False)
    return f"min {_fmt(a.min())}  max {_fmt(a.max())}  mean {_fmt(a.mean())}"


def _tooltip(title: str, tensor: Tensor, kernel: str | None = None) -> str:
    """A short preview of the values (and gradient) shown when hovering in SVG, and the fast
    kernel that computed the tensor if one did."""
    lines = [f"{title}: {_shape_text(tensor)} {tensor.dtype}"]
    if kernel is not None:
        lines.append(f"computed by the {kernel} kernel, not the textbook {title}")
    lines.append(f"values {_values(tensor.data, 8)}")
    if tensor.data.size > SMALL:
        lines.append(_stats(tensor.data))
    if tensor.grad is not None:
        lines.append(f"grad {_values(np.asarray(tensor.grad), 8)}")
    return "\\n".join(line for line in lines if line)


# ---------------------------------------------------------------- one drawn node


@dataclass
class _Node:
    """What the drawing shows for one node: label lines, kind, and the grad used for shading."""

    key: str
    lines: list[str]
    kind: str  # "op", "param", "buffer", "input" or "module"
    tooltip: str
    grad_norm: float | None = None
    nonfinite: bool = False
    attrs: dict[str, str] = field(default_factory=dict)


def _grad_norm(grad) -> float | None:
    if grad is None:
        return None
    g = np.asarray(grad, dtype=np.float64)
    return float(np.sqrt(np.sum(g * g)))


def _tensor_node(key: str, tensor: Tensor, names, show_data: bool, show_grad: bool) -> _Node:
    """The node of one tensor: op name (and fast kernel) and details, or leaf name and dtype;
    values; grad."""
    kernel = None
    if tensor.op is not None:
        title, symbol, kernel = tensor.op.name, _symbol(tensor.op), _kernel(tensor.op)
        heading = f"{title} ({symbol})" if symbol else title
        heading = f"{tensor.name} = {heading}" if tensor.name else heading
        heading = f"{heading} · {kernel}" if kernel else heading
        lines = [heading, _op_details(tensor), _shape_text(tensor)]
        kind = "op"
    else:
        title = _leaf_name(tensor, names)
        lines = [title, f"{_shape_text(tensor)} {tensor.dtype}"]
        kind = "param" if tensor.requires_grad else "input"
        if _is_buffer(tensor, names.buffers):
            lines[1] += " (buffer)"
            kind = "buffer"
    if show_data and tensor.data.size <= SMALL:
        lines.append(f"data {_values(tensor.data)}")
    grad = tensor.grad if show_grad else None
    if grad is not None:
        lines.extend(_grad_lines(np.asarray(grad)))
    return _Node(
        key=key,
        lines=[line for line in lines if line],
        kind=kind,
        tooltip=_tooltip(title, tensor, kernel),
        grad_norm=_grad_norm(grad),
        nonfinite=_is_nonfinite(tensor.data) or _is_nonfinite(grad),
    )


def _module_node(key: str, call: ModuleCall, output: Tensor, show_grad: bool) -> _Node:
    """The single node of a collapsed module call: its label and output shape."""
    label = _call_label(call)
    lines = [label, _shape_text(output)]
    grad = output.grad if show_grad else None
    if grad is not None:
        lines.extend(_grad_lines(np.asarray(grad)))
    return _Node(
        key=key,
        lines=lines,
        kind="module",
        tooltip=_tooltip(label, output),
        grad_norm=_grad_norm(grad),
        nonfinite=_is_nonfinite(output.data) or _is_nonfinite(grad),
    )


# ---------------------------------------------------------------- node styles


def _kind_style(kind: str) -> dict[str, str]:
    fills = {
        "op": OP_FILL,
        "param": PARAM_FILL,
        "buffer": BUFFER_FILL,
        "input": INPUT_FILL,
        "module": MODULE_FILL,
    }
    style = {"param": "filled", "input": "filled", "buffer": "filled,dashed"}.get(
        kind, "rounded,filled"
    )
    return {"shape": "box", "style": style, "fillcolor": fills[kind], "color": BORDER}


def _shade(t: float) -> str:
    """A fill between white (t=0) and SHADE_MAX (t=1)."""
    rgb = [round(255 + (c - 255) * t) for c in SHADE_MAX]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _shade_fills(nodes: list[_Node]) -> dict[str, str]:
    """Fill per node key by log gradient norm, scaled between the smallest and largest norm."""
    logs = {n.key: math.log10(n.grad_norm) for n in nodes if n.grad_norm}
    zero = {n.key: _shade(0.0) for n in nodes if n.grad_norm == 0.0}
    if not logs:
        return zero
    low, high = min(logs.values()), max(logs.values())
    span = high - low
    return zero | {k: _shade(1.0 if span == 0 else (v - low) / span) for k, v in logs.items()}


def _style_nodes(nodes: list[_Node], root_key: str, lit: set[str], shade_by_grad: bool) -> None:
    """Set the graphviz attributes of every node: kind, root, shade, highlight, NaN (last wins)."""
    fills = _shade_fills(nodes) if shade_by_grad else {}
    for node in nodes:
        attrs = _kind_style(node.kind)
        if node.key == root_key:
            attrs.update(
                fillcolor=ROOT_FILL, peripheries="2", penwidth="2", style="rounded,filled,bold"
            )
        if node.key in fills:
            attrs["fillcolor"] = fills[node.key]
        if node.key in lit:
            attrs.update(color=HIGHLIGHT, penwidth="3")
        if node.nonfinite:
            attrs.update(color=NONFINITE, fontcolor=NONFINITE, fillcolor=NONFINITE_FILL)
        node.attrs = attrs


# ---------------------------------------------------------------- the public API


def _check_options(root, rankdir: str, max_nodes: int) -> None:
    if not isinstance(root, Tensor):
        raise TypeError(f"draw_graph: expected a Tensor to draw, got {type(root).__name__}")
    if rankdir not in RANKDIRS:
        raise ValueError(f"draw_graph: rankdir must be one of {RANKDIRS}, got {rankdir!r}")
    if not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"draw_graph: max_nodes must be a positive integer, got {max_nodes!r}")


def _too_many(what: str) -> ValueError:
    return ValueError(
        f"draw_graph: {what}; a drawing that big is unreadable and slow. Draw a smaller "
        "example (fewer ops, e.g. one layer), pass collapse=True (with params=model) to "
        "draw one node per layer, or raise max_nodes"
    )


def _highlight_path(highlight, params, graph: Graph) -> set[int]:
    """The graph positions the highlighted tensor's gradient flows back through (or none)."""
    if highlight is None:
        return set()
    if isinstance(highlight, Tensor):
        target = highlight
    else:
        by_name = dict(named_tensors(params))
        if highlight not in by_name:
            raise ValueError(
                f"draw_graph: highlight={highlight!r} is not a parameter name; expected one of "
                f"{sorted(by_name)} (names come from params=)"
            )
        target = by_name[highlight]
    start = graph.index.get(id(target))
    if start is None:
        raise ValueError("draw_graph: the highlight tensor is not part of this graph")
    return reaching(graph, start)


def draw_graph(
    root: Tensor,
    params: Module | Mapping[str, Tensor] | None = None,
    show_data: bool = True,
    show_grad: bool = True,
    cluster_modules: bool = False,
    collapse: bool | str | Iterable[str] = False,
    highlight: Tensor | str | None = None,
    rankdir: str = "TB",
    shade_by_grad: bool = False,
    max_nodes: int = 2000,
) -> graphviz.Digraph:
    """The computation graph below `root` (usually the loss) as a graphviz Digraph.

    An op computed by a fast kernel rather than its textbook code names it after the op:
    `Conv2d · winograd` (and in its tooltip).

    Args:
        root: the tensor to draw the graph of; it is drawn with a bold double border.
        params: a Module (names from `named_parameters`, e.g. `0.weight`, and module names for
            the boxes) or a dict name -> Tensor; unnamed leaves are labelled by `.name`, else
            `input` / `constant` / `leaf`.
        show_data: show the values of tensors with at most 6 elements.
        show_grad: show a gradient summary on nodes that hold a `.grad` (after backward).
        cluster_modules: box the ops of each module call, labelled like
            `0: Conv2d(1, 8, kernel_size=3)`.
        collapse: True draws every leaf module call as one node (its parameters still feed it);
            a module name or a list of names collapses just those.
        highlight: a parameter (Tensor, or its name when params is given): the ops its gradient
            flows back through, from the root, are coloured green.
        rankdir: graphviz direction, "TB" (inputs at the top) or "LR", "BT", "RL".
        shade_by_grad: fill nodes with a gradient from white to orange by log gradient norm.
        max_nodes: refuse (ValueError) graphs with more tensors than this; the count stops at
            the limit, so a 100,000-op chain is refused at once.

    Returns:
        a `graphviz.Digraph`; pass it to `render(graph, "g.svg")`, or show it in Jupyter.
    """
    _check_options(root, rankdir, max_nodes)
    limit = max_nodes * 20 if collapse else max_nodes
    graph = walk(root, limit)
    if graph is None:
        raise _too_many(
            f"the graph has more than max_nodes={max_nodes} tensors"
            if not collapse
            else f"the graph has more than {limit} tensors (20 x max_nodes={max_nodes} when "
            "collapsing)"
        )
    names, modules = _LeafNames(parameter_names(params)), module_names(params)
    names.buffers = buffer_names(params)
    names.update(names.buffers)
    calls = module_calls(graph, modules) if cluster_modules or collapse else []
    collapsed = collapsed_calls(calls, collapse, modules)
    keys = node_keys(graph, collapsed)
    nodes = [
        _tensor_node(key, tensor, names, show_data, show_grad)
        if call is None
        else _module_node(key, call, tensor, show_grad)
        for key, tensor, call in drawn_nodes(graph, keys, collapsed)
    ]
    if len(nodes) > max_nodes:
        raise _too_many(f"even collapsed, the drawing has more than max_nodes={max_nodes} nodes")
    lit = {keys[i] for i in _highlight_path(highlight, params, graph)}
    _style_nodes(nodes, keys[graph.index[id(root)]], lit, shade_by_grad)
    boxed = boxed_calls(calls, collapsed, params) if cluster_modules else []
    return _assemble(nodes, drawn_edges(graph, keys), lit, owners(keys, boxed), boxed, rankdir)


def _new_digraph(rankdir: str) -> graphviz.Digraph:
    graph = graphviz.Digraph("computation_graph")
    graph.attr(
        rankdir=rankdir,
        fontname="Helvetica",
        fontsize="12",
        nodesep="0.3",
        ranksep="0.35",
        newrank="true",
    )
    graph.attr("node", fontname="Helvetica", fontsize="11", margin="0.12,0.04", height="0.3")
    graph.attr("edge", fontname="Helvetica", fontsize="9", color="#6b7280", arrowsize="0.7")
    return graph


def _add_node(graph: graphviz.Digraph, node: _Node) -> None:
    label = graphviz.nohtml("\\n".join(node.lines))
    graph.node(node.key, label=label, tooltip=graphviz.nohtml(node.tooltip), **node.attrs)


def _assemble(
    nodes: list[_Node],
    edges: list[Edge],
    lit: set[str],
    owner_of: dict[str, ModuleCall],
    boxed: list[ModuleCall],
    rankdir: str,
) -> graphviz.Digraph:
    """Put the nodes into their cluster boxes (inner boxes first), then add every edge."""
    graph = _new_digraph(rankdir)
    boxes = {id(call): _new_box(k, call) for k, call in enumerate(boxed)}
    for node in nodes:
        owner = owner_of.get(node.key)
        _add_node(boxes[id(owner)] if owner is not None else graph, node)
    boxed_ids = set(boxes)
    for call in boxed:  # innermost first: a box is complete before it goes into its parent
        parent = call.parent
        while parent is not None and id(parent) not in boxed_ids:
            parent = parent.parent
        (boxes[id(parent)] if parent is not None else graph).subgraph(boxes[id(call)])
    for edge in edges:
        graph.edge(edge.tail, edge.head, **_edge_attrs(edge, lit))
    return graph


def _edge_attrs(edge: Edge, lit: set[str]) -> dict[str, str]:
    """Position label; a heavier weight keeps the main data flow straight; highlight colour."""
    attrs = {"label": str(edge.position)} if edge.position is not None else {}
    if edge.spine:
        attrs["weight"] = "5"
    if edge.tail in lit and edge.head in lit:
        attrs.update(color=HIGHLIGHT, penwidth="2.5")
    return attrs


def _new_box(k: int, call: ModuleCall) -> graphviz.Digraph:
    box = graphviz.Digraph(name=f"cluster_{k}")
    box.attr(
        # spaces: dot underestimates the label's width, and the rounded corners clip it
        label=graphviz.nohtml(f"  {_call_label(call)}  "),
        style="rounded,dashed",
        color="#7c6fc4",
        fontcolor="#4b3f99",
        labeljust="l",
        margin="10",
    )
    return box


def render(graph: graphviz.Digraph, path: str | os.PathLike) -> Path:
    """Render with the system `dot` to `path`; the format comes from the suffix (svg/png/pdf).

    The file is written atomically (a temporary file in the same folder, then renamed), so a
    reader never sees half a picture. Returns the path written.

    Raises:
        ValueError: the suffix is not .svg, .png or .pdf.
        GraphvizNotFoundError: the `dot` program is not installed.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(
            f"render: cannot tell the format from {path.name!r}; use a .svg, .png or .pdf suffix"
        )
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFoundError(
            "render: the graphviz program `dot` was not found on PATH; install graphviz "
            "(Debian/Ubuntu: `sudo apt-get install graphviz`, macOS: `brew install graphviz`, "
            "conda: `conda install -c conda-forge graphviz`) and try again"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: f.write(data), binary=True)
    return path
