"""Draw the computation graph of a tensor with graphviz, to see how backprop flows.

>>> loss = model(x).nll_loss(y)
>>> loss.backward()
>>> graph = draw_graph(loss, params=model, cluster_modules=True)
>>> render(graph, "graph.svg")          # or just `graph` as the last line of a Jupyter cell

Every tensor is a node, and edges follow the data from the inputs down to the loss. Op nodes show
the op name (with its stride/padding/kernel/axis) and the output shape; leaf nodes show their name
(`0.weight` when `params` is given), shape and dtype; tensors of up to six elements show their
values. After `backward()` each node that holds a `.grad` shows a summary of it: the value of a
scalar gradient, or the L2 norm, the largest magnitude and the share of exact zeros (a large
share below a ReLU means dead units). Nodes holding NaN or Inf are drawn red. In SVG output
hovering a node shows a preview of its values.

`cluster_modules=True` boxes the ops of each layer call (read from the `module_calls` that
`Module.__call__` records), and `collapse=True` draws each layer as one node, so a whole CNN stays
readable. The walk over the graph is iterative and refuses graphs over `max_nodes` quickly.
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

from .files import write_atomically
from .nn.module import Module
from .tensor import Tensor

__all__ = ["GraphvizNotFoundError", "draw_graph", "render"]

SMALL = 6  # tensors with at most this many elements show their values in the label
FORMATS = ("svg", "png", "pdf")
RANKDIRS = ("TB", "LR", "BT", "RL")

# colours: one per kind of node, plus the states that must stand out
OP_FILL = "#eef0f3"
PARAM_FILL = "#d6e9ff"
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


# ---------------------------------------------------------------- walking the tensor graph


@dataclass
class _Graph:
    """The tensors below a root, inputs first, with their edges as (parent, child, position)."""

    nodes: list[Tensor]
    index: dict[int, int]
    edges: list[tuple[int, int, int]]


def _topological(root: Tensor, limit: int) -> list[Tensor] | None:
    """Every tensor below root, inputs before outputs; None as soon as there are over `limit`."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > limit:
            return None
        stack.append((node, True))
        stack.extend((p, False) for p in reversed(node._parents) if id(p) not in seen)
    return order


def _build_graph(nodes: list[Tensor]) -> _Graph:
    """Index the walked tensors and list every input edge of every op, in input order."""
    index = {id(t): i for i, t in enumerate(nodes)}
    edges = [
        (index[id(parent)], i, position)
        for i, t in enumerate(nodes)
        for position, parent in enumerate(t._parents)
    ]
    return _Graph(nodes, index, edges)


def _too_many(what: str) -> ValueError:
    return ValueError(
        f"draw_graph: {what}; a drawing that big is unreadable and slow. Draw a smaller "
        "example (fewer ops, e.g. one layer), pass collapse=True (with params=model) to "
        "draw one node per layer, or raise max_nodes"
    )


def _ancestors(graph: _Graph, tensors: Iterable[Tensor]) -> set[int]:
    """Positions of the given tensors and everything they were computed from."""
    found: set[int] = set()
    stack = [graph.index[id(t)] for t in tensors if id(t) in graph.index]
    while stack:
        i = stack.pop()
        if i in found:
            continue
        found.add(i)
        stack.extend(graph.index[id(p)] for p in graph.nodes[i]._parents)
    return found


def _reaching(graph: _Graph, target: Tensor) -> set[int]:
    """Positions of the tensors computed from `target` (and target itself): its gradient path."""
    start = graph.index.get(id(target))
    if start is None:
        raise ValueError("draw_graph: the highlight tensor is not part of this graph")
    path = {start}
    for i in range(start + 1, len(graph.nodes)):  # nodes are in topological order
        if any(graph.index[id(p)] in path for p in graph.nodes[i]._parents):
            path.add(i)
    return path


# ---------------------------------------------------------------- names and module calls


@dataclass
class _Call:
    """One call of a module: the graph positions of its ops, its output and its label."""

    module: Module
    output: int
    members: set[int]
    label: str
    name: str | None
    order: int = 0
    parent: _Call | None = field(default=None, repr=False)


def _parameter_names(params) -> dict[int, str]:
    """id(tensor) -> name, from a Module's named_parameters or a dict name -> Tensor."""
    if params is None:
        return {}
    if isinstance(params, Module):
        return {id(t): name for name, t in params.named_parameters()}
    if isinstance(params, Mapping):
        return {id(t): str(name) for name, t in params.items()}
    raise TypeError(
        f"draw_graph: params must be a Module or a dict name -> Tensor, got {type(params).__name__}"
    )


def _module_names(params) -> dict[int, str]:
    """id(module) -> dotted name (the root module is "")."""
    if not isinstance(params, Module):
        return {}
    return {id(m): name for name, m in params.named_modules()}


# repr noise of the layers' defaults, dropped from cluster labels
_DEFAULT_NOISE = (
    ", stride=1",
    ", bias=True",
    "start_dim=1, end_dim=-1",
    "in_features=",
    "out_features=",
)


def _short_repr(module: Module) -> str:
    """`Conv2d(1, 8, kernel_size=3)`: the layer's repr with square pairs and defaults folded."""
    if module._modules:
        return type(module).__name__
    text = re.sub(r"\((\d+), \1\)", r"\1", f"{type(module).__name__}({module.extra_repr()})")
    for noise in _DEFAULT_NOISE:
        text = text.replace(noise, "")
    return text


def _module_calls(graph: _Graph, module_names: dict[int, str]) -> list[_Call]:
    """Every recorded module call in the graph, innermost first, each with its nesting parent."""
    calls: list[_Call] = []
    for out_pos, tensor in enumerate(graph.nodes):
        for depth, (module, inputs) in enumerate(getattr(tensor, "module_calls", ())):
            members = _call_members(graph, out_pos, inputs)
            if not members:
                continue
            name = module_names.get(id(module))
            label = _short_repr(module) if not name else f"{name}: {_short_repr(module)}"
            calls.append(_Call(module, out_pos, members, label, name, order=depth))
    calls.sort(key=lambda c: (len(c.members), c.order, c.output))
    _link_parents(calls)
    return calls


def _call_members(graph: _Graph, out_pos: int, inputs) -> set[int]:
    """Ancestors-or-equal of the output that are not ancestors-or-equal of the call's inputs.

    Only tensors placed before the last input in the topological order can be ancestors of
    the inputs, so the inputs' ancestors are collected only when such a tensor is met.
    """
    last_input = max((graph.index.get(id(t), -1) for t in inputs), default=-1)
    before: set[int] | None = None
    members: set[int] = set()
    stack = [out_pos]
    while stack:
        i = stack.pop()
        if i in members:
            continue
        if i <= last_input:
            before = _ancestors(graph, inputs) if before is None else before
            if i in before:
                continue
        members.add(i)
        stack.extend(graph.index[id(p)] for p in graph.nodes[i]._parents)
    return members


def _link_parents(calls: list[_Call]) -> None:
    """Give each call the smallest later call that contains all of its members."""
    for k, call in enumerate(calls):
        call.parent = next((c for c in calls[k + 1 :] if call.members <= c.members), None)


def _collapsed_calls(calls: list[_Call], collapse, module_names: dict[int, str]) -> list[_Call]:
    """The calls drawn as one node: all leaf layers (collapse=True) or the named modules."""
    if collapse is False or collapse is None:
        return []
    if collapse is True:
        return [c for c in calls if not c.module._modules]
    wanted = [collapse] if isinstance(collapse, str) else list(collapse)
    unknown = [n for n in wanted if n not in module_names.values()]
    if unknown:
        raise ValueError(
            f"draw_graph: collapse names {unknown} are not modules of params; expected some of "
            f"{sorted(n for n in module_names.values() if n)} (pass params=model)"
        )
    return [c for c in calls if c.name in wanted]


# ---------------------------------------------------------------- formatting text


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
_SYMBOLS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Neg": "-x", "MatMul": "@"}


def _op_details(tensor: Tensor) -> str:
    """The op's attributes: kernel/stride/padding for conv and pool, axis and friends else."""
    op = tensor._op
    attrs = dict(op.attrs)
    if op.name == "Conv2d":
        kernel = tensor._parents[1].shape[2:]
        return (
            f"kernel {_pair_text(kernel)}  stride {_pair_text(attrs['stride'])}  "
            f"padding {_pair_text(attrs['padding'])}"
        )
    if op.name == "MaxPool2d":
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


def _leaf_name(tensor: Tensor, names: dict[int, str]) -> str:
    """The parameter name, else the user's name, else what kind of leaf it is."""
    if id(tensor) in names:
        return names[id(tensor)]
    if tensor.name:
        return str(tensor.name)
    if tensor.requires_grad:
        return "leaf"
    return "constant" if tensor.size == 1 else "input"


def _stats(array: np.ndarray) -> str:
    if array.size == 0 or array.dtype.kind not in "fiu":
        return ""
    a = array.astype(np.float64, copy=False)
    return f"min {_fmt(a.min())}  max {_fmt(a.max())}  mean {_fmt(a.mean())}"


def _tooltip(title: str, tensor: Tensor) -> str:
    """A short preview of the values (and gradient) shown when hovering in SVG."""
    lines = [f"{title}: {_shape_text(tensor)} {tensor.dtype}", f"values {_values(tensor.data, 8)}"]
    if tensor.size > SMALL:
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
    kind: str  # "op", "param", "input" or "module"
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
    """The node of one tensor: op name and details, or leaf name and dtype; values; grad."""
    if tensor._op is not None:
        title = tensor._op.name
        symbol = _SYMBOLS.get(title)
        heading = f"{title} ({symbol})" if symbol else title
        heading = f"{tensor.name} = {heading}" if tensor.name else heading
        lines = [heading, _op_details(tensor), _shape_text(tensor)]
        kind = "op"
    else:
        title = _leaf_name(tensor, names)
        lines = [title, f"{_shape_text(tensor)} {tensor.dtype}"]
        kind = "param" if tensor.requires_grad else "input"
    if show_data and tensor.size <= SMALL:
        lines.append(f"data {_values(tensor.data)}")
    grad = tensor.grad if show_grad else None
    if grad is not None:
        lines.extend(_grad_lines(np.asarray(grad)))
    return _Node(
        key=key,
        lines=[line for line in lines if line],
        kind=kind,
        tooltip=_tooltip(title, tensor),
        grad_norm=_grad_norm(grad),
        nonfinite=_is_nonfinite(tensor.data) or _is_nonfinite(grad),
    )


def _module_node(key: str, call: _Call, output: Tensor, show_grad: bool) -> _Node:
    """The single node of a collapsed module call: its label and output shape."""
    lines = [call.label, _shape_text(output)]
    grad = output.grad if show_grad else None
    if grad is not None:
        lines.extend(_grad_lines(np.asarray(grad)))
    return _Node(
        key=key,
        lines=lines,
        kind="module",
        tooltip=_tooltip(call.label, output),
        grad_norm=_grad_norm(grad),
        nonfinite=_is_nonfinite(output.data) or _is_nonfinite(grad),
    )


# ---------------------------------------------------------------- node styles


def _kind_style(kind: str) -> dict[str, str]:
    fills = {"op": OP_FILL, "param": PARAM_FILL, "input": INPUT_FILL, "module": MODULE_FILL}
    style = "filled" if kind in ("param", "input") else "rounded,filled"
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


def _highlight_tensor(highlight, params) -> Tensor | None:
    """The tensor to highlight, given as a Tensor or as a parameter name."""
    if highlight is None or isinstance(highlight, Tensor):
        return highlight
    by_name = {name: t for name, t in _named_tensors(params)}
    if highlight not in by_name:
        raise ValueError(
            f"draw_graph: highlight={highlight!r} is not a parameter name; expected one of "
            f"{sorted(by_name)} (names come from params=)"
        )
    return by_name[highlight]


def _named_tensors(params):
    if isinstance(params, Module):
        return params.named_parameters()
    if isinstance(params, Mapping):
        return params.items()
    return ()


def _keys(graph: _Graph, collapsed: list[_Call]) -> list[str]:
    """The drawn node key of every graph position: its own, or its collapsed module's.

    Parameters (leaves that require grad) stay their own nodes, feeding the module's node.
    """
    keys = [f"n{i}" for i in range(len(graph.nodes))]
    claimed: set[int] = set()
    for k, call in sorted(enumerate(collapsed), key=lambda kc: -len(kc[1].members)):
        for i in call.members - claimed:
            tensor = graph.nodes[i]
            if not (tensor._op is None and tensor.requires_grad):
                keys[i] = f"m{k}"
        claimed |= call.members
    return keys


def _spine(graph: _Graph) -> set[int]:
    """The chain from the root back through every op's first input: the main data flow."""
    chain = {len(graph.nodes) - 1}
    node = graph.nodes[-1]
    while node._parents:
        node = node._parents[0]
        chain.add(graph.index[id(node)])
    return chain


@dataclass
class _Edge:
    """A drawn edge; `label` is the input position when the op has several inputs."""

    tail: str
    head: str
    label: str
    spine: bool


def _edges(graph: _Graph, keys: list[str]) -> list[_Edge]:
    """Drawn edges, without duplicates or self loops (edges inside a collapsed module)."""
    spine = _spine(graph)
    seen: set[tuple[str, str, str]] = set()
    edges = []
    for src, dst, position in graph.edges:
        a, b = keys[src], keys[dst]
        if a == b:
            continue
        several = b.startswith("n") and len(graph.nodes[dst]._parents) > 1
        label = str(position) if several else ""
        if (a, b, label) not in seen:
            seen.add((a, b, label))
            edges.append(_Edge(a, b, label, src in spine and dst in spine))
    return edges


def _owners(graph: _Graph, keys: list[str], boxed: list[_Call]) -> dict[str, _Call]:
    """The innermost boxed call holding each drawn node (absent: drawn outside every box)."""
    owners: dict[str, _Call] = {}
    for call in reversed(boxed):  # outermost first, so inner calls overwrite
        for i in call.members:
            owners[keys[i]] = call
    return owners


def _boxed_calls(calls, collapsed, params, cluster_modules: bool) -> list[_Call]:
    """The calls drawn as cluster boxes: not the params module itself, not inside a collapse."""
    if not cluster_modules:
        return []
    return [
        c
        for c in calls
        if c.module is not params and not any(c.members <= k.members for k in collapsed)
    ]


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
    order = _topological(root, limit)
    if order is None:
        raise _too_many(
            f"the graph has more than max_nodes={max_nodes} tensors"
            if not collapse
            else f"the graph has more than {limit} tensors (20 x max_nodes={max_nodes} when "
            "collapsing)"
        )
    graph = _build_graph(order)
    names, module_names = _parameter_names(params), _module_names(params)
    calls = _module_calls(graph, module_names) if cluster_modules or collapse else []
    collapsed = sorted(_collapsed_calls(calls, collapse, module_names), key=lambda c: c.output)
    keys = _keys(graph, collapsed)
    nodes = _drawn_nodes(graph, keys, collapsed, names, show_data, show_grad)
    if len(nodes) > max_nodes:
        raise _too_many(f"even collapsed, the drawing has more than max_nodes={max_nodes} nodes")
    edges = _edges(graph, keys)
    target = _highlight_tensor(highlight, params)
    path = _reaching(graph, target) if target is not None else set()
    lit = {keys[i] for i in path}
    _style_nodes(nodes, keys[graph.index[id(root)]], lit, shade_by_grad)
    boxed = _boxed_calls(calls, collapsed, params, cluster_modules)
    return _assemble(nodes, edges, lit, _owners(graph, keys, boxed), boxed, rankdir)


def _drawn_nodes(graph, keys, collapsed, names, show_data, show_grad) -> list[_Node]:
    """One _Node per drawn key, in topological order."""
    nodes: list[_Node] = []
    done: set[str] = set()
    for i, tensor in enumerate(graph.nodes):
        key = keys[i]
        if key in done:
            continue
        done.add(key)
        if key.startswith("m"):
            call = collapsed[int(key[1:])]
            nodes.append(_module_node(key, call, graph.nodes[call.output], show_grad))
        else:
            nodes.append(_tensor_node(key, tensor, names, show_data, show_grad))
    return nodes


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


def _assemble(nodes, edges, lit, owners, boxed, rankdir) -> graphviz.Digraph:
    """Put the nodes into their cluster boxes (inner boxes first), then add every edge."""
    graph = _new_digraph(rankdir)
    boxes = {id(call): _new_box(k, call) for k, call in enumerate(boxed)}
    for node in nodes:
        owner = owners.get(node.key)
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


def _edge_attrs(edge: _Edge, lit: set[str]) -> dict[str, str]:
    """Position label; a heavier weight keeps the main data flow straight; highlight colour."""
    attrs = {"label": edge.label} if edge.label else {}
    if edge.spine:
        attrs["weight"] = "5"
    if edge.tail in lit and edge.head in lit:
        attrs.update(color=HIGHLIGHT, penwidth="2.5")
    return attrs


def _new_box(k: int, call: _Call) -> graphviz.Digraph:
    box = graphviz.Digraph(name=f"cluster_{k}")
    box.attr(
        # spaces: dot underestimates the label's width, and the rounded corners clip it
        label=graphviz.nohtml(f"  {call.label}  "),
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
