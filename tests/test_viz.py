"""The graph drawer: what the DOT source says (nodes, labels, edges, boxes, colours), rendering
with the real `dot`, and the `tinygrad-mnist graph` command.

The DOT text is parsed with regexes into nodes, edges and clusters; nothing is compared as a
whole string, so layout attributes can change freely.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist import Tensor, models, nn, ops, viz
from tinygrad_mnist.tensor import topological_order

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="the graphviz `dot` program is not installed")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"
XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"

# ---------------------------------------------------------------- parsing DOT

ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s\]"]+)')
NODE = re.compile(r"^(\w+) \[(.*)\]$")
EDGE = re.compile(r"^(\w+) -> (\w+)(?: \[(.*)\])?$")
CLUSTER = re.compile(r"^subgraph (cluster_\w+) \{$")


def _attrs(text: str | None) -> dict[str, str]:
    return {k: v[1:-1] if v.startswith('"') else v for k, v in ATTR.findall(text or "")}


class Dot:
    """The nodes, edges and clusters of a graphviz DOT source."""

    def __init__(self, source: str):
        self.nodes: dict[str, dict[str, str]] = {}
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.clusters: dict[str, dict] = {}
        stack: list[str] = []
        for line in source.splitlines():
            text = line.strip()
            if m := CLUSTER.match(text):
                parent = stack[-1] if stack else None
                self.clusters[m[1]] = {"attrs": {}, "nodes": [], "parent": parent}
                stack.append(m[1])
            elif text == "}":
                if stack:
                    stack.pop()
            elif m := EDGE.match(text):
                self.edges.append((m[1], m[2], _attrs(m[3])))
            elif (m := NODE.match(text)) and m[1] not in ("node", "edge", "graph"):
                self.nodes[m[1]] = {**_attrs(m[2]), "cluster": stack[-1] if stack else None}
                if stack:
                    self.clusters[stack[-1]]["nodes"].append(m[1])
            elif stack and "=" in text:
                self.clusters[stack[-1]]["attrs"].update(_attrs(text))

    def heading(self, node: str) -> str:
        """The first line of a node's label, as drawn."""
        return self.nodes[node]["label"].split("\\n")[0]

    def lines(self, node: str) -> list[str]:
        """The label of a node, split into its lines, without the ` · kernel` that names the fast
        kernel that ran an op, so that tests read the same whichever implementation ran (the
        kernel tests below read it with `heading`)."""
        lines = self.nodes[node]["label"].split("\\n")
        return [lines[0].split(" · ")[0], *lines[1:]]

    def title(self, node: str) -> str:
        return self.lines(node)[0]

    def find(self, title: str) -> str:
        """The one node whose label starts with the line `title`."""
        found = [n for n in self.nodes if self.title(n) == title]
        assert len(found) == 1, f"{len(found)} nodes titled {title!r} in {self.titles()}"
        return found[0]

    def titles(self) -> list[str]:
        return [self.title(n) for n in self.nodes]

    def edges_between(self, a: str, b: str) -> list[dict[str, str]]:
        return [attrs for x, y, attrs in self.edges if (x, y) == (a, b)]

    def cluster_labels(self) -> dict[str, str]:
        return {name: c["attrs"]["label"].strip() for name, c in self.clusters.items()}

    def cluster_of(self, node: str) -> str | None:
        return self.nodes[node]["cluster"]


def dot_of(tensor: Tensor, **options) -> Dot:
    return Dot(viz.draw_graph(tensor, **options).source)


def grad_numbers(lines: list[str]) -> tuple[float, float, float]:
    """(norm, absmax, zero percent) from a node's label lines."""
    text = " ".join(lines)
    m = re.search(r"grad norm (\S+) absmax (\S+)  zeros (\S+)%", text)
    assert m, f"no gradient summary in {lines}"
    return float(m[1]), float(m[2]), float(m[3])


# ---------------------------------------------------------------- fixtures


def scalar_expression():
    """micrograd's teaching example: L = (a * b + c) * f."""
    a = Tensor(2.0, requires_grad=True, name="a")
    b = Tensor(-3.0, requires_grad=True, name="b")
    c = Tensor(10.0, requires_grad=True, name="c")
    f = Tensor(-2.0, requires_grad=True, name="f")
    e = a * b
    d = e + c
    loss = d * f
    return (a, b, c, f), loss


def model_loss(name: str, batch: int = 3, seed: int = 0):
    nn.init.manual_seed(seed)
    model = models.build_model(name)
    rng = np.random.default_rng(seed)
    x = Tensor(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = np.arange(batch) % 10
    loss = model(x).nll_loss(y)
    return model, loss


@pytest.fixture(scope="module")
def seed_cnn():
    model, loss = model_loss("seed-cnn")
    loss.backward()
    return model, loss


@pytest.fixture(scope="module")
def lenet_cnn():
    model, loss = model_loss("lenet-cnn")
    loss.backward()
    return model, loss


# ---------------------------------------------------------------- small expressions


def test_a_times_a_draws_two_edges_labelled_by_position():
    a = Tensor(3.0, requires_grad=True, name="a")
    dot = dot_of(a * a)
    assert sorted(dot.titles()) == ["Mul (*)", "a"]
    labels = sorted(e["label"] for e in dot.edges_between(dot.find("a"), dot.find("Mul (*)")))
    assert labels == ["0", "1"]


def test_a_minus_b_is_unambiguous():
    a = Tensor([1.0, 2.0], requires_grad=True, name="a")
    b = Tensor([5.0, 7.0], requires_grad=True, name="b")
    dot = dot_of(a - b)
    sub = dot.find("Sub (-)")
    assert [e["label"] for e in dot.edges_between(dot.find("a"), sub)] == ["0"]
    assert [e["label"] for e in dot.edges_between(dot.find("b"), sub)] == ["1"]
    assert dot.lines(sub)[1:] == ["(2,)", "data [-4, -5]"]


def test_single_input_ops_have_unlabelled_edges():
    a = Tensor([1.0, 2.0], requires_grad=True, name="a")
    dot = dot_of(a.exp().sum())
    assert all("label" not in attrs for _, _, attrs in dot.edges)


def test_scalar_expression_before_backward():
    (a, b, c, f), loss = scalar_expression()
    dot = dot_of(loss)
    assert sorted(dot.titles()) == sorted(["a", "b", "c", "f", "Mul (*)", "Add (+)", "Mul (*)"])
    assert dot.lines(dot.find("a")) == ["a", "scalar float32", "data 2"]
    assert dot.lines(dot.find("Add (+)")) == ["Add (+)", "scalar", "data 4"]
    assert not any("grad" in line for n in dot.nodes for line in dot.lines(n))
    # data flows from the leaves down to the loss: 6 edges, none out of the root
    assert len(dot.edges) == 6
    root = next(n for n in dot.nodes if dot.nodes[n].get("peripheries") == "2")
    assert dot.lines(root)[-1] == "data -8"
    assert not [e for e in dot.edges if e[0] == root]
    assert {x for x, _, _ in dot.edges} == set(dot.nodes) - {root}


def test_scalar_expression_after_backward_shows_gradients():
    (a, b, c, f), loss = scalar_expression()
    loss.backward()
    dot = dot_of(loss)
    for tensor in (a, b, c, f):
        assert dot.lines(dot.find(tensor.name))[-1] == f"grad {tensor.grad.item():.4g}"
    assert dot.lines(dot.find("a"))[-1] == "grad 6"
    # intermediates keep no grad unless retained
    assert not any("grad" in line for line in dot.lines(dot.find("Add (+)")))


def test_retained_intermediate_gradient_is_shown():
    a = Tensor(2.0, requires_grad=True, name="a")
    b = (a * 3.0).retain_grad()
    loss = b * b
    loss.backward()
    dot = dot_of(loss)
    mul = next(
        n for n in dot.nodes if dot.nodes[n].get("peripheries") != "2" and dot.title(n) == "Mul (*)"
    )
    assert dot.lines(mul)[-1] == f"grad {b.grad.item():.4g}"
    assert dot.title(dot.find("constant")) == "constant"


def test_named_intermediates_show_their_name():
    a = Tensor(2.0, requires_grad=True, name="a")
    e = a * a
    e.name = "e"
    dot = dot_of(e.exp())
    assert dot.lines(dot.find("e = Mul (*)")) == ["e = Mul (*)", "scalar", "data 4"]


def test_show_data_and_show_grad_can_be_switched_off():
    (a, *_), loss = scalar_expression()
    loss.backward()
    dot = dot_of(loss, show_data=False, show_grad=False)
    assert dot.lines(dot.find("a")) == ["a", "scalar float32"]


def test_leaves_show_name_shape_and_dtype_and_big_tensors_hide_values():
    x = Tensor(np.ones((3, 4), dtype=np.float64), name="x")
    w = Tensor(np.ones((4, 5)), requires_grad=True)
    dot = dot_of((x @ w).sum())
    assert dot.lines(dot.find("x")) == ["x", "(3, 4) float64"]
    assert dot.lines(dot.find("leaf")) == ["leaf", "(4, 5) float64"]
    assert dot.lines(dot.find("MatMul (@)")) == ["MatMul (@)", "(3, 5)"]
    assert dot.lines(dot.find("Sum"))[1:] == ["scalar", "data 60"]


def test_params_dict_names_the_leaves():
    w = Tensor([1.0, 2.0], requires_grad=True)
    dot = dot_of((w * 2.0).sum(), params={"weight": w})
    assert dot.lines(dot.find("weight"))[:2] == ["weight", "(2,) float32"]


def test_conv_and_pool_nodes_show_kernel_stride_padding():
    x = Tensor(np.ones((1, 2, 9, 9), dtype=np.float32), name="x")
    w = Tensor(np.ones((4, 2, 3, 3), dtype=np.float32), requires_grad=True, name="w")
    y = x.conv2d(w, stride=2, padding=1).max_pool2d(2)
    dot = dot_of(y.sum())
    assert dot.lines(dot.find("Conv2d"))[1:] == [
        "kernel 3  stride 2  padding 1",
        "(1, 4, 5, 5)",
    ]
    assert dot.lines(dot.find("MaxPool2d"))[1:] == ["kernel 2  stride 2", "(1, 4, 2, 2)"]


def test_tooltips_preview_the_values():
    x = Tensor(np.arange(20, dtype=np.float32), requires_grad=True, name="x")
    loss = (x * x).sum()
    loss.backward()
    dot = dot_of(loss)
    tooltip = dot.nodes[dot.find("x")]["tooltip"]
    assert tooltip.startswith("x: (20,) float32")
    assert "values [0, 1, 2, 3, ..., 16, 17, 18, 19]" in tooltip
    assert "grad [0, 2, 4, 6, ..., 32, 34, 36, 38]" in tooltip


def test_root_stands_out():
    (a, *_), loss = scalar_expression()
    dot = dot_of(loss)
    roots = [n for n in dot.nodes if dot.nodes[n].get("peripheries") == "2"]
    assert len(roots) == 1
    assert "bold" in dot.nodes[roots[0]]["style"]
    assert dot.nodes[roots[0]]["fillcolor"] == viz.ROOT_FILL


# ---------------------------------------------------------------- gradients and NaN


def test_gradient_summaries_match_the_tensors_grads(seed_cnn):
    model, loss = seed_cnn
    dot = dot_of(loss, params=model)
    for name, param in model.named_parameters():
        norm, absmax, zeros = grad_numbers(dot.lines(dot.find(name)))
        g = param.grad.astype(np.float64)
        assert norm == pytest.approx(np.linalg.norm(g), rel=1e-3)
        assert absmax == pytest.approx(np.abs(g).max(), rel=1e-3)
        assert zeros == pytest.approx(100 * np.mean(g == 0), abs=0.05)


def test_zero_share_exposes_dead_units():
    w = Tensor([[1.0, -1.0], [2.0, -3.0]], requires_grad=True, name="w")
    pre = Tensor(np.ones((2, 2), dtype=np.float32)) @ w
    loss = pre.relu().sum()
    loss.backward()
    dot = dot_of(loss)
    norm, absmax, zeros = grad_numbers(dot.lines(dot.find("w")))
    assert (norm, absmax, zeros) == (pytest.approx(np.sqrt(8), rel=1e-3), 2.0, 50.0)


def test_nan_value_is_drawn_red():
    x = Tensor([1.0, -1.0], requires_grad=True, name="x")
    with np.errstate(invalid="ignore"):
        dot = dot_of(x.log().sum())
    for title in ("Log", "Sum"):
        assert dot.nodes[dot.find(title)]["color"] == "red"
    assert dot.nodes[dot.find("x")]["color"] != "red"


def test_infinite_gradient_is_drawn_red():
    x = Tensor([0.0, 4.0], requires_grad=True, name="x")
    loss = x.sqrt().sum()
    with np.errstate(divide="ignore"):
        loss.backward()
    assert np.isinf(x.grad).any()
    dot = dot_of(loss)
    assert dot.nodes[dot.find("x")]["color"] == "red"
    assert dot.nodes[dot.find("Sqrt")]["color"] != "red"


def test_shade_by_grad_fills_by_gradient_norm(seed_cnn):
    model, loss = seed_cnn
    dot = dot_of(loss, params=model, shade_by_grad=True)
    norms = {n: np.linalg.norm(p.grad) for n, p in model.named_parameters()}
    fills = {n: dot.nodes[dot.find(n)]["fillcolor"] for n in norms}
    assert fills[max(norms, key=norms.get)] == "#{:02x}{:02x}{:02x}".format(*viz.SHADE_MAX)
    assert fills[min(norms, key=norms.get)] == "#ffffff"
    assert len(set(fills.values())) == len(fills)


# ---------------------------------------------------------------- models, clusters, collapse

SEED_LAYERS = [
    "0: Conv2d(1, 8, kernel_size=3)",
    "1: ReLU()",
    "2: MaxPool2d(kernel_size=2, stride=2)",
    "3: Flatten()",
    "4: Linear(1352, 10)",
    "5: LogSoftmax(dim=1)",
]


def test_seed_cnn_full_graph(seed_cnn):
    model, loss = seed_cnn
    dot = dot_of(loss, params=model)
    assert not dot.clusters
    assert len(dot.nodes) == 14  # 9 ops, 4 parameters, the input
    for name in ("0.weight", "0.bias", "4.weight", "4.bias"):
        dot.find(name)
    assert dot.lines(dot.find("input")) == ["input", "(3, 1, 28, 28) float32"]
    assert dot.lines(dot.find("NLLLoss"))[1:] == [
        "targets [0, 1, 2]",
        "scalar",
        dot.lines(dot.find("NLLLoss"))[-1],
    ]


def test_seed_cnn_clustered_has_one_box_per_layer(seed_cnn):
    model, loss = seed_cnn
    dot = dot_of(loss, params=model, cluster_modules=True)
    labels = dot.cluster_labels()
    assert sorted(labels.values()) == sorted(SEED_LAYERS)
    by_label = {label: name for name, label in labels.items()}
    conv = dot.clusters[by_label[SEED_LAYERS[0]]]["nodes"]
    assert sorted(dot.title(n) for n in conv) == ["0.bias", "0.weight", "Conv2d"]
    linear = dot.clusters[by_label[SEED_LAYERS[4]]]["nodes"]
    assert sorted(dot.title(n) for n in linear) == [
        "4.bias",
        "4.weight",
        "Add (+)",
        "MatMul (@)",
        "Transpose",
    ]
    assert all(c["parent"] is None for c in dot.clusters.values())
    assert dot.cluster_of(dot.find("NLLLoss")) is None
    assert dot.cluster_of(dot.find("input")) is None


def test_unnamed_modules_are_labelled_by_their_repr(seed_cnn):
    _, loss = seed_cnn
    labels = set(dot_of(loss, cluster_modules=True).cluster_labels().values())
    # without params the top-level Sequential gets its own box around the layers
    assert labels == {label.split(": ", 1)[1] for label in SEED_LAYERS} | {"Sequential"}


def test_nested_modules_give_nested_boxes():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            return self.head(self.body(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(x)

    net = Net()
    loss = net(Tensor(np.ones((2, 4), dtype=np.float32))).sum()
    dot = dot_of(loss, params=net, cluster_modules=True)
    by_label = {label: name for name, label in dot.cluster_labels().items()}
    assert set(by_label) == {
        "block: Block",
        "block.body: Sequential",
        "block.body.0: Linear(4, 3)",
        "block.body.1: ReLU()",
        "block.head: Linear(3, 2)",
    }

    def parent(label):
        return dot.clusters[by_label[label]]["parent"]

    assert parent("block: Block") is None
    assert parent("block.body: Sequential") == by_label["block: Block"]
    assert parent("block.body.0: Linear(4, 3)") == by_label["block.body: Sequential"]
    assert parent("block.head: Linear(3, 2)") == by_label["block: Block"]
    assert dot.cluster_of(dot.find("block.body.0.weight")) == by_label["block.body.0: Linear(4, 3)"]


def test_lenet_collapsed_is_one_node_per_layer(lenet_cnn):
    model, loss = lenet_cnn
    dot = dot_of(loss, params=model, cluster_modules=True, collapse=True)
    assert len(dot.nodes) <= 20
    layer_titles = [f"{name}: {viz.draw.short_repr(m)}" for name, m in model.named_children()]
    for title in layer_titles:
        assert dot.lines(dot.find(title))[0] == title
    assert dot.lines(dot.find("6: Linear(9216, 128)"))[1] == "(3, 128)"
    assert not dot.clusters  # every layer is a node; the Sequential itself is no box
    # each parameter still feeds its layer's node
    for name, _ in model.named_parameters():
        layer = next(t for t in layer_titles if t.startswith(name.split(".")[0] + ":"))
        assert dot.edges_between(dot.find(name), dot.find(layer))
    # the layers form one chain from the input to the loss
    chain = [dot.find("input"), *(dot.find(t) for t in layer_titles), dot.find("NLLLoss")]
    for a, b in zip(chain, chain[1:], strict=False):
        assert dot.edges_between(a, b), (dot.title(a), dot.title(b))
    edge_ends = {n for a, b, _ in dot.edges for n in (a, b)}
    assert edge_ends == set(dot.nodes)


def test_lenet_full_and_collapsed_node_counts(lenet_cnn):
    model, loss = lenet_cnn
    full = dot_of(loss, params=model, cluster_modules=True)
    collapsed = dot_of(loss, params=model, collapse=True)
    assert len(full.nodes) == 24
    assert len(full.clusters) == 10
    assert len(collapsed.nodes) == 20


def test_collapse_named_modules_only(seed_cnn):
    model, loss = seed_cnn
    dot = dot_of(loss, params=model, cluster_modules=True, collapse=["4"])
    dot.find("4: Linear(1352, 10)")
    dot.find("Conv2d")
    assert "4: Linear(1352, 10)" not in dot.cluster_labels().values()
    assert "0: Conv2d(1, 8, kernel_size=3)" in dot.cluster_labels().values()
    with pytest.raises(ValueError, match="not modules of params"):
        viz.draw_graph(loss, params=model, collapse=["7"])


# ---------------------------------------------------------------- highlight


def test_highlight_colours_exactly_the_gradient_path(seed_cnn):
    model, loss = seed_cnn
    dot = dot_of(loss, params=model, highlight="0.weight")
    lit = {n for n, attrs in dot.nodes.items() if attrs.get("color") == viz.HIGHLIGHT}
    assert sorted(dot.title(n) for n in lit) == sorted(
        [
            "0.weight",
            "Conv2d",
            "ReLU",
            "MaxPool2d",
            "Reshape",
            "MatMul (@)",
            "Add (+)",
            "LogSoftmax",
            "NLLLoss",
        ]
    )
    lit_edges = {(a, b) for a, b, attrs in dot.edges if attrs.get("color") == viz.HIGHLIGHT}
    assert lit_edges == {(a, b) for a, b, _ in dot.edges if a in lit and b in lit}
    assert len(lit_edges) == 8


def test_highlight_by_tensor_and_errors(seed_cnn):
    model, loss = seed_cnn
    dot = dot_of(loss, params=model, highlight=model[4].bias)
    lit = {dot.title(n) for n, a in dot.nodes.items() if a.get("color") == viz.HIGHLIGHT}
    assert lit == {"4.bias", "Add (+)", "LogSoftmax", "NLLLoss"}
    with pytest.raises(ValueError, match="not a parameter name"):
        viz.draw_graph(loss, params=model, highlight="9.weight")
    with pytest.raises(ValueError, match="not part of this graph"):
        viz.draw_graph(loss, highlight=Tensor(1.0, requires_grad=True))


def test_highlight_in_collapsed_graph(lenet_cnn):
    model, loss = lenet_cnn
    dot = dot_of(loss, params=model, collapse=True, highlight="6.weight")
    lit = {dot.title(n) for n, a in dot.nodes.items() if a.get("color") == viz.HIGHLIGHT}
    assert lit == {
        "6.weight",
        "6: Linear(9216, 128)",
        "7: ReLU()",
        "8: Linear(128, 10)",
        "9: LogSoftmax(dim=1)",
        "NLLLoss",
    }


# ---------------------------------------------------------------- size limits and options


def chain(n: int) -> Tensor:
    x = Tensor(1.0, requires_grad=True, name="x")
    for _ in range(n):
        x = x * 1.0
    return x


def test_huge_graph_is_refused_quickly():
    deep = chain(100_000)
    for collapse in (False, True):
        start = time.perf_counter()
        with pytest.raises(ValueError, match="max_nodes=.*collapse=True"):
            viz.draw_graph(deep, collapse=collapse)
        assert time.perf_counter() - start < 2.0


def test_deep_graph_under_the_limit_is_drawn_without_recursion():
    dot = dot_of(chain(3000), max_nodes=10_000)
    assert len(dot.nodes) == 3000 * 2 + 1  # each Mul plus its constant, and x


def test_bad_options_are_refused():
    x = Tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="rankdir"):
        viz.draw_graph(x * 2.0, rankdir="UP")
    with pytest.raises(ValueError, match="max_nodes"):
        viz.draw_graph(x * 2.0, max_nodes=0)
    with pytest.raises(TypeError, match="expected a Tensor"):
        viz.draw_graph(np.ones(3))
    with pytest.raises(TypeError, match="params"):
        viz.draw_graph(x * 2.0, params=[x])


def test_rankdir_is_passed_to_graphviz():
    x = Tensor(1.0, requires_grad=True)
    assert "rankdir=LR" in viz.draw_graph(x * 2.0, rankdir="LR").source


def test_leaf_alone_is_a_one_node_graph():
    dot = dot_of(Tensor([1.0, 2.0], name="v"))
    assert dot.titles() == ["v"] and not dot.edges


# ---------------------------------------------------------------- provenance, op classes, kernels


class Group(nn.Module):
    """A module that does nothing itself, to label a hand-made group of ops."""

    def forward(self, x):
        return x


def test_layer_boxes_come_from_the_declared_module_calls():
    assert Tensor.module_calls == ()  # declared on the class: no tensor lacks it
    layer = nn.Linear(3, 2)
    x = Tensor(np.ones((4, 3), dtype=np.float32), name="x")
    out = layer(x)
    assert out.module_calls == ((layer, (x,)),)
    dot = dot_of((out * 2.0).sum(), cluster_modules=True)
    (box,) = dot.clusters.values()
    assert box["attrs"]["label"].strip() == "Linear(3, 2)"
    assert sorted(dot.title(n) for n in box["nodes"]) == [
        "Add (+)",
        "MatMul (@)",
        "Transpose",
        "leaf",
        "leaf",
    ]
    assert dot.cluster_of(dot.find("Mul (*)")) is None


def test_module_calls_set_by_hand_are_drawn_and_nothing_else_is_read():
    x = Tensor([1.0, 2.0], requires_grad=True, name="x")
    h = (x * 2.0).exp()
    loss = h.sum()
    assert not dot_of(loss, cluster_modules=True).clusters
    h.module_calls = ((Group(), (x,)),)
    dot = dot_of(loss, cluster_modules=True)
    assert dot.cluster_labels() == {"cluster_0": "Group()"}
    assert sorted(dot.title(n) for n in dot.clusters["cluster_0"]["nodes"]) == [
        "Exp",
        "Mul (*)",
        "constant",
    ]
    collapsed = dot_of(loss, collapse=True)
    assert sorted(collapsed.titles()) == ["Group()", "Sum", "x"]


def rename(op: ops.Op, name: str) -> None:
    """Make a recorded op an instance of a subclass of its class, with another name."""
    renamed = type(name, (type(op),), {"__slots__": (), "name": property(lambda self: name)})
    op.__class__ = renamed


def test_ops_are_recognised_by_their_class_not_their_name():
    x = Tensor(np.ones((1, 2, 9, 9), dtype=np.float32), name="x")
    w = Tensor(np.ones((4, 2, 3, 3), dtype=np.float32), requires_grad=True, name="w")
    conv = x.conv2d(w, stride=2, padding=1)
    pool = conv.max_pool2d(2)
    scaled = pool * 2.0
    rename(conv.op, "RenamedConv2d")
    rename(pool.op, "RenamedMaxPool2d")
    rename(scaled.op, "Times")
    dot = dot_of(scaled.sum())
    assert dot.lines(dot.find("RenamedConv2d"))[1] == "kernel 3  stride 2  padding 1"
    assert dot.lines(dot.find("RenamedMaxPool2d"))[1] == "kernel 2  stride 2"
    dot.find("Times (*)")


def test_op_run_by_a_fast_kernel_names_it_on_the_node_and_in_the_tooltip():
    x = Tensor(np.ones((1, 2, 5, 5), dtype=np.float32), name="x")
    w = Tensor(np.ones((3, 2, 3, 3), dtype=np.float32), requires_grad=True, name="w")
    conv = x.conv2d(w, padding=1)
    act = conv.relu()
    act.name = "act"
    conv.op.kernel = "winograd"  # as if the Winograd kernel had run
    act.op.kernel = "tiled"
    loss = act.sum()
    loss.op.kernel = ops.Op.kernel  # the textbook implementation
    dot = dot_of(loss)
    node = dot.find("Conv2d")
    assert dot.heading(node) == "Conv2d · winograd"
    assert dot.lines(node) == ["Conv2d", "kernel 3  stride 1  padding 1", "(1, 3, 5, 5)"]
    assert (
        "computed by the winograd kernel, not the textbook Conv2d" in (dot.nodes[node]["tooltip"])
    )
    assert dot.heading(dot.find("act = ReLU")) == "act = ReLU · tiled"
    assert dot.heading(dot.find("Sum")) == "Sum"
    assert "kernel" not in dot.nodes[dot.find("Sum")]["tooltip"]


def test_every_kernel_that_ran_is_named_once_per_op(lenet_cnn):
    """Whatever the kernel table chose for this model, each op node names its kernel."""
    model, loss = lenet_cnn
    dot = dot_of(loss, params=model)
    ran = Counter(
        t.op.kernel for t in topological_order(loss) if t.op and t.op.kernel != ops.Op.kernel
    )
    named = Counter(dot.heading(n).split(" · ")[1] for n in dot.nodes if " · " in dot.heading(n))
    assert named == ran


VIZ = Path(viz.__file__).resolve().parent


def test_viz_layers_analysis_apart_from_drawing_without_private_names_or_op_names():
    graph_source = (VIZ / "graph.py").read_text()
    assert "graphviz" not in graph_source.split('"""', 2)[2]  # no import, no use
    assert "topological_order" in graph_source
    op_names = {cls.__name__ for cls in ops.op_classes()}
    for path in VIZ.glob("*.py"):
        tree = ast.parse(path.read_text())
        private = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.endswith("__")
        }
        assert not private, f"{path.name} reads private names {private}"
        strings = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        assert not strings & op_names, f"{path.name} spells op names {strings & op_names}"


def test_only_the_cli_imports_viz():
    package = VIZ.parent
    for path in package.rglob("*.py"):
        if path.parent == VIZ or path in (package / "cli.py", package / "__init__.py"):
            continue
        text = path.read_text()
        assert not re.search(
            r"^\s*(from \S*viz|import \S*viz)|from \.+ import .*\bviz\b", text, re.M
        ), path


# ---------------------------------------------------------------- rendering


@needs_dot
@pytest.mark.parametrize("suffix", [".svg", ".png", ".pdf"])
def test_render_writes_a_valid_file_and_no_temp_files(tmp_path, seed_cnn, suffix):
    model, loss = seed_cnn
    graph = viz.draw_graph(loss, params=model, cluster_modules=True)
    out = viz.render(graph, tmp_path / f"graph{suffix}")
    assert out == tmp_path / f"graph{suffix}"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    data = out.read_bytes()
    if suffix == ".svg":
        svg = ET.fromstring(data)
        assert svg.tag.endswith("svg")
        assert "0: Conv2d(1, 8, kernel_size=3)" in data.decode()
        tooltips = [a.get(XLINK_TITLE) for a in svg.iter(SVG + "a")]
        assert any(t.startswith("0.weight: (8, 1, 3, 3) float32\nvalues [") for t in tooltips)
    elif suffix == ".png":
        assert data.startswith(PNG_SIGNATURE)
    else:
        assert data.startswith(b"%PDF")


@needs_dot
def test_render_replaces_an_existing_file(tmp_path):
    out = tmp_path / "g.svg"
    out.write_text("old")
    viz.render(viz.draw_graph(Tensor(1.0, requires_grad=True) * 2.0), out)
    assert out.read_text().lstrip().startswith("<?xml")


def test_render_refuses_unknown_suffix(tmp_path):
    graph = viz.draw_graph(Tensor(1.0, requires_grad=True) * 2.0)
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.pdf"):
        viz.render(graph, tmp_path / "graph.jpg")
    assert not list(tmp_path.iterdir())


def test_render_without_dot_says_how_to_install(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    graph = viz.draw_graph(Tensor(1.0, requires_grad=True) * 2.0)
    with pytest.raises(viz.GraphvizNotFoundError, match="`dot` was not found") as info:
        viz.render(graph, tmp_path / "graph.svg")
    assert "apt-get install graphviz" in str(info.value)
    assert "brew install graphviz" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


def test_digraph_displays_inline_in_jupyter():
    graph = viz.draw_graph(Tensor(1.0, requires_grad=True) * 2.0)
    assert callable(getattr(graph, "_repr_mimebundle_", None))
    if HAS_DOT:
        bundle = graph._repr_mimebundle_()
        assert ET.fromstring(bundle["image/svg+xml"]).tag.endswith("svg")


DOC = Path(__file__).resolve().parent.parent / "docs" / "visualisation.md"


@needs_dot
@pytest.mark.skipif(not DOC.is_file(), reason="docs/visualisation.md is not there")
def test_doc_snippets_make_their_pictures(tmp_path, monkeypatch):
    """The Python blocks of docs/visualisation.md that write a picture run as shown."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    snippets = [b for b in blocks if "docs/images/" in b]
    assert len(snippets) >= 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs" / "images").mkdir(parents=True)
    for code in snippets:
        exec(compile(code, str(DOC), "exec"), {})
    written = sorted(p.name for p in (tmp_path / "docs" / "images").iterdir())
    assert written == ["lenet-cnn-highlight.png", "scalar-after.png", "scalar-before.png"]


# ---------------------------------------------------------------- the `graph` command


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinygrad_mnist", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def graph_command():
    help_text = run_cli("--help")
    if "graph" not in help_text.stdout + help_text.stderr:
        pytest.skip("the CLI has no `graph` command yet")
    if not HAS_DOT:
        pytest.skip("the graphviz `dot` program is not installed")


def test_cli_graph_svg(graph_command, tmp_path):
    out = tmp_path / "x.svg"
    result = run_cli("graph", "--model", "seed-cnn", "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert ET.fromstring(text).tag.endswith("svg")
    for label in SEED_LAYERS:
        assert label in text
    assert [p.name for p in tmp_path.iterdir()] == ["x.svg"]


def test_cli_graph_collapsed_png(graph_command, tmp_path):
    out = tmp_path / "x.png"
    result = run_cli("graph", "--model", "lenet-cnn", "--collapse", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_cli_graph_collapsed_svg_has_one_node_per_layer(graph_command, tmp_path):
    out = tmp_path / "x.svg"
    result = run_cli("graph", "--model", "lenet-cnn", "--collapse", "--out", str(out))
    assert result.returncode == 0, result.stderr
    svg = ET.fromstring(out.read_text())
    nodes = [g for g in svg.iter(SVG + "g") if g.get("class") == "node"]
    assert len(nodes) <= 20


def test_cli_graph_bad_suffix_is_a_clean_error(graph_command, tmp_path):
    result = run_cli("graph", "--model", "seed-cnn", "--out", str(tmp_path / "x.jpg"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())
