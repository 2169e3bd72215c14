"""Draw the computation graph of a tensor with graphviz, to see how backprop flows.

>>> loss = model(x).nll_loss(y)
>>> loss.backward()
>>> graph = draw_graph(loss, params=model, cluster_modules=True)
>>> render(graph, "graph.svg")          # or just `graph` as the last line of a Jupyter cell

Every tensor is a node, and edges follow the data from the inputs down to the loss. Op nodes show
the op name (with its stride/padding/kernel/axis) and the output shape, and name the fast kernel
that computed them when it was not the textbook op (`Conv2d · winograd`); leaf nodes show their
name (`0.weight` when `params` is given), shape and dtype; tensors of up to six elements show
their values. After `backward()` each node that holds a `.grad` shows a summary of it: the value
of a scalar gradient, or the L2 norm, the largest magnitude and the share of exact zeros (a large
share below a ReLU means dead units). Nodes holding NaN or Inf are drawn red. In SVG output
hovering a node shows a preview of its values.

`cluster_modules=True` boxes the ops of each layer call (read from the `Tensor.module_calls` that
`Module.__call__` records), and `collapse=True` draws each layer as one node, so a whole CNN stays
readable. The walk over the graph is iterative and refuses graphs over `max_nodes` quickly.

Two modules: `graph` finds the nodes, edges and module calls (no graphviz), `draw` says what
each node shows and how it looks, and renders.
"""

# the API, and the drawing's colours and limits (viz.ROOT_FILL, ...) as before the package split
from .draw import (  # noqa: F401
    BORDER,
    FORMATS,
    HIGHLIGHT,
    INPUT_FILL,
    MODULE_FILL,
    NONFINITE,
    NONFINITE_FILL,
    OP_FILL,
    PARAM_FILL,
    RANKDIRS,
    ROOT_FILL,
    SHADE_MAX,
    SMALL,
    GraphvizNotFoundError,
    draw_graph,
    render,
)

__all__ = ["GraphvizNotFoundError", "draw_graph", "render"]
