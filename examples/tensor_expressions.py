"""Autograd on scalars, micrograd style: build an expression, draw its graph, backprop, draw again.

    python examples/tensor_expressions.py [--out DIR] [--format svg|png]

Writes DIR/before.FORMAT (values only) and DIR/after.FORMAT (with the
gradient dL/dx on every node) and prints each gradient next to the one worked out by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinygrad_mnist import Tensor, viz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the drawings")
    parser.add_argument("--format", choices=["svg", "png"], default="png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    # L = (a * b + c) * f, the example of Karpathy's micrograd lecture
    a = Tensor(2.0, requires_grad=True, name="a")
    b = Tensor(-3.0, requires_grad=True, name="b")
    c = Tensor(10.0, requires_grad=True, name="c")
    f = Tensor(-2.0, requires_grad=True, name="f")
    e = (a * b).retain_grad()  # intermediates keep .grad only when asked, as in PyTorch
    d = (e + c).retain_grad()
    L = (d * f).retain_grad()
    e.name, d.name, L.name = "e", "d", "L"
    print(f"L = (a * b + c) * f = ({a.item()} * {b.item()} + {c.item()}) * {f.item()} = {L.item()}")

    before = viz.render(viz.draw_graph(L, rankdir="LR"), args.out / f"before.{args.format}")
    L.backward()
    after = viz.render(viz.draw_graph(L, rankdir="LR"), args.out / f"after.{args.format}")

    # the chain rule by hand, from L backwards: dL/dd = f, dL/df = d, an add passes its
    # gradient on unchanged (dL/dc = dL/de = dL/dd), a product multiplies by the other input
    by_hand = {"L": 1.0, "d": -2.0, "f": 4.0, "c": -2.0, "e": -2.0, "a": -2.0 * -3, "b": -2.0 * 2}
    for name, tensor in {"L": L, "d": d, "f": f, "c": c, "e": e, "a": a, "b": b}.items():
        grad = float(tensor.grad)
        assert grad == by_hand[name], (name, grad, by_hand[name])
        print(f"dL/d{name} = {grad:5.1f}   (by hand: {by_hand[name]:5.1f})")
    print(f"graph before backward: {before}")
    print(f"graph after backward:  {after}")


if __name__ == "__main__":
    main()
