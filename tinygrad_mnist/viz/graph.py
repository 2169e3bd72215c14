"""The analysis half of the graph drawer: which tensors, edges and module calls a drawing holds.

Nothing here draws or writes text. A `Graph` is the tensors below a root in topological order
(from `tensor.topological_order`, the same walk backward uses), with their edges; a
`ModuleCall` is one layer call, read from the `Tensor.module_calls` that `nn.Module.__call__`
records, with the graph positions of the tensors it computed. The functions below group those
positions into drawn nodes (collapsing a module call into one), edges, and boxes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ..nn.module import Module
from ..tensor import Tensor, topological_order


@dataclass
class Graph:
    """The tensors below a root, inputs first, and every op input as (parent, child, position).

    `nodes[i]` is the tensor at graph position i; `index` maps `id(tensor)` to its position;
    the root is the last node.
    """

    nodes: list[Tensor]
    index: dict[int, int]
    edges: list[tuple[int, int, int]]

    def parent_positions(self, i: int) -> list[int]:
        """The positions of the inputs of the op that made node i, in input order."""
        return [self.index[id(p)] for p in self.nodes[i].parents]


def walk(root: Tensor, limit: int) -> Graph | None:
    """The graph below `root`, or None as soon as it has more than `limit` tensors."""
    order = topological_order(root, limit=limit)
    if order is None:
        return None
    index = {id(t): i for i, t in enumerate(order)}
    edges = [
        (index[id(parent)], i, position)
        for i, t in enumerate(order)
        for position, parent in enumerate(t.parents)
    ]
    return Graph(order, index, edges)


def ancestors(graph: Graph, tensors: Iterable[Tensor]) -> set[int]:
    """Positions of the given tensors and of everything they were computed from."""
    found: set[int] = set()
    stack = [graph.index[id(t)] for t in tensors if id(t) in graph.index]
    while stack:
        i = stack.pop()
        if i not in found:
            found.add(i)
            stack.extend(graph.parent_positions(i))
    return found


def reaching(graph: Graph, start: int) -> set[int]:
    """Positions of the tensors computed from node `start` (and start itself): its gradient path."""
    path = {start}
    for i in range(start + 1, len(graph.nodes)):  # nodes are in topological order
        if any(p in path for p in graph.parent_positions(i)):
            path.add(i)
    return path


def spine(graph: Graph) -> set[int]:
    """The chain from the root back through every op's first input: the main data flow."""
    chain = {len(graph.nodes) - 1}
    node = graph.nodes[-1]
    while node.parents:
        node = node.parents[0]
        chain.add(graph.index[id(node)])
    return chain


# ---------------------------------------------------------------- names


def parameter_names(params: Module | Mapping[str, Tensor] | None) -> dict[int, str]:
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


def buffer_names(params) -> dict[int, str]:
    """id(tensor) -> name of a Module's buffers (`1.running_mean`): state, not parameters."""
    if not isinstance(params, Module):
        return {}
    return {id(t): name for name, t in params.named_buffers()}


def named_tensors(params) -> Iterable[tuple[str, Tensor]]:
    """(name, tensor) pairs of a Module's parameters or of a dict; nothing for anything else."""
    if isinstance(params, Module):
        return params.named_parameters()
    if isinstance(params, Mapping):
        return params.items()
    return ()


def module_names(params) -> dict[int, str]:
    """id(module) -> dotted name, for a Module and everything in it (the root module is "")."""
    if not isinstance(params, Module):
        return {}
    return {id(m): name for name, m in params.named_modules()}


def is_leaf_module(module: Module) -> bool:
    """True for a layer with no sub-modules (Conv2d, ReLU), False for a container."""
    return next(module.children(), None) is None


# ---------------------------------------------------------------- module calls


@dataclass
class ModuleCall:
    """One call of a module: the graph positions of the tensors it computed.

    `name` is the module's dotted name in `params` (None when unknown); `depth` is 0 for the
    innermost module that returned the output; `parent` is the smallest call that contains
    this one.
    """

    module: Module
    name: str | None
    output: int
    members: set[int]
    depth: int = 0
    parent: ModuleCall | None = field(default=None, repr=False)


def module_calls(graph: Graph, names: dict[int, str]) -> list[ModuleCall]:
    """Every recorded module call in the graph, innermost first, each with its nesting parent."""
    calls: list[ModuleCall] = []
    for out_pos, tensor in enumerate(graph.nodes):
        for depth, (module, inputs) in enumerate(tensor.module_calls):
            members = _call_members(graph, out_pos, inputs)
            if members:
                calls.append(ModuleCall(module, names.get(id(module)), out_pos, members, depth))
    calls.sort(key=lambda c: (len(c.members), c.depth, c.output))
    for k, call in enumerate(calls):
        call.parent = next((c for c in calls[k + 1 :] if call.members <= c.members), None)
    return calls


def _call_members(graph: Graph, out_pos: int, inputs: tuple[Tensor, ...]) -> set[int]:
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
            before = ancestors(graph, inputs) if before is None else before
            if i in before:
                continue
        members.add(i)
        stack.extend(graph.parent_positions(i))
    return members


def collapsed_calls(
    calls: list[ModuleCall], collapse: bool | str | Iterable[str], names: dict[int, str]
) -> list[ModuleCall]:
    """The calls drawn as one node, by output position: every leaf layer (collapse=True) or the
    modules named in `collapse`."""
    if collapse is False or collapse is None:
        return []
    if collapse is True:
        return sorted((c for c in calls if is_leaf_module(c.module)), key=lambda c: c.output)
    wanted = [collapse] if isinstance(collapse, str) else list(collapse)
    unknown = [n for n in wanted if n not in names.values()]
    if unknown:
        raise ValueError(
            f"draw_graph: collapse names {unknown} are not modules of params; expected some of "
            f"{sorted(n for n in names.values() if n)} (pass params=model)"
        )
    return sorted((c for c in calls if c.name in wanted), key=lambda c: c.output)


def boxed_calls(calls: list[ModuleCall], collapsed: list[ModuleCall], params) -> list[ModuleCall]:
    """The calls drawn as boxes: not the `params` module itself, nor any inside a collapsed one."""
    return [
        c
        for c in calls
        if c.module is not params and not any(c.members <= k.members for k in collapsed)
    ]


# ---------------------------------------------------------------- drawn nodes and edges


def node_keys(graph: Graph, collapsed: list[ModuleCall]) -> list[str]:
    """The drawn node of every graph position: `n<i>` for itself, `m<k>` for collapsed call k.

    Parameters (leaves that require grad) stay their own nodes, feeding the module's node.
    """
    keys = [f"n{i}" for i in range(len(graph.nodes))]
    claimed: set[int] = set()
    for k, call in sorted(enumerate(collapsed), key=lambda kc: -len(kc[1].members)):
        for i in call.members - claimed:
            tensor = graph.nodes[i]
            if not (tensor.op is None and tensor.requires_grad):
                keys[i] = f"m{k}"
        claimed |= call.members
    return keys


def drawn_nodes(
    graph: Graph, keys: list[str], collapsed: list[ModuleCall]
) -> Iterator[tuple[str, Tensor, ModuleCall | None]]:
    """(key, tensor, collapsed call or None) once per drawn node, in topological order; for a
    collapsed call the tensor is the call's output."""
    done: set[str] = set()
    for i, key in enumerate(keys):
        if key in done:
            continue
        done.add(key)
        if key == f"n{i}":
            yield key, graph.nodes[i], None
        else:
            call = collapsed[int(key[1:])]
            yield key, graph.nodes[call.output], call


@dataclass
class Edge:
    """A drawn edge; `position` is which input of the head op it is, when the op has several."""

    tail: str
    head: str
    position: int | None
    spine: bool


def drawn_edges(graph: Graph, keys: list[str]) -> list[Edge]:
    """Edges between drawn nodes, without duplicates or self loops (edges inside a collapse)."""
    main = spine(graph)
    seen: set[tuple[str, str, int | None]] = set()
    edges = []
    for src, dst, position in graph.edges:
        a, b = keys[src], keys[dst]
        if a == b:
            continue
        several = b == f"n{dst}" and len(graph.nodes[dst].parents) > 1
        shown = position if several else None
        if (a, b, shown) not in seen:
            seen.add((a, b, shown))
            edges.append(Edge(a, b, shown, src in main and dst in main))
    return edges


def owners(keys: list[str], boxed: list[ModuleCall]) -> dict[str, ModuleCall]:
    """The innermost boxed call holding each drawn node (absent: drawn outside every box)."""
    found: dict[str, ModuleCall] = {}
    for call in reversed(boxed):  # outermost first, so inner calls overwrite
        for i in call.members:
            found[keys[i]] = call
    return found
