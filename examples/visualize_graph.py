"""Draw the computation graph of one forward pass and loss of a CNN, three ways.

    python examples/visualize_graph.py [--model seed-cnn|lenet-cnn] [--out DIR] [--format svg|png]

Writes to DIR:
  MODEL-layers.FORMAT     every op, boxed by the layer call it belongs to
  MODEL-collapsed.FORMAT  one node per layer, parameters still feeding in
  MODEL-highlight.FORMAT  collapsed, with the path the first conv weight's gradient takes back
                          from the loss in green and every node shaded by its gradient norm
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinygrad_mnist import Tensor, data, nn, viz
from tinygrad_mnist.models import MODELS, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="seed-cnn")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the drawings")
    parser.add_argument("--format", choices=["svg", "png"], default="svg")
    parser.add_argument("--batch", type=int, default=2, help="sample digits in the batch")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    sample = data.load_sample()
    x = Tensor(data.preprocess(sample.test_images[: args.batch], normalize=True), name="input")
    y = sample.test_labels[: args.batch]
    nn.init.manual_seed(0)
    model = build_model(args.model)
    loss = model(x).nll_loss(y)
    loss.backward()  # so that every parameter node shows a gradient summary
    print(f"{args.model}: loss {loss.item():.4f} on {args.batch} digits {y.tolist()}")

    drawings = {
        "layers": viz.draw_graph(loss, params=model, cluster_modules=True),
        "collapsed": viz.draw_graph(loss, params=model, collapse=True),
        "highlight": viz.draw_graph(
            loss, params=model, collapse=True, highlight="0.weight", shade_by_grad=True
        ),
    }
    for kind, graph in drawings.items():
        path = viz.render(graph, args.out / f"{args.model}-{kind}.{args.format}")
        print(f"{kind:>9}: {path}")


if __name__ == "__main__":
    main()
