"""Write a weight set of the l2l-zo-gain design from a controller that gain_es.py trained.

The set holds the shipped l2l-zo UpdateRNN and QueryRNN and the controller's weights
(``--coordinate 2`` controllers only: the design's seven features and three outputs), in
the format zominimize.learned.weights loads, so that ``python -m benchmarks --goals
--weights FOLDER`` measures it. Run from the repository root::

    python research/export_gain.py research/runs/gain-es-decay/controller-150.pt \
        --out /tmp/l2l-zo-gain
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zominimize import learned  # noqa: E402
from zominimize.learned import gain, weights  # noqa: E402
from zominimize.learned.designs import L2L_ZO, L2L_ZO_GAIN  # noqa: E402


def gain_net(theta: torch.Tensor) -> gain.GainNet:
    """The GainNet holding a gain_es.py parameter vector (W1, b1, w2, b2, start)."""
    net = gain.GainNet()
    with torch.no_grad():
        i = 0
        for parameter in (net.w1, net.b1, net.w2, net.b2, net.start):
            parameter.copy_(theta[i:i + parameter.numel()].reshape(parameter.shape))
            i += parameter.numel()
    if i != theta.numel():
        raise ValueError(f"a controller of {theta.numel()} parameters is not the design's "
                         f"({i}): train it with gain_es.py --coordinate 2")
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("controller", help="a controller.pt written by gain_es.py")
    parser.add_argument("--out", required=True, help="the weights folder to write")
    parser.add_argument("--name", default="l2l-zo")
    args = parser.parse_args()
    saved = torch.load(args.controller, weights_only=False)
    if saved.get("inner") != "l2l-zo" or int(saved.get("coordinate", 0)) != 2:
        raise SystemExit(f"{args.controller}: not a --coordinate 2 controller around l2l-zo")
    parts = learned.load_parts("l2l-zo", None, "cpu")
    if parts.design is not L2L_ZO:
        raise SystemExit("the shipped l2l-zo is not the plain design: its UpdateRNN is "
                         "parts.update.rnn")
    update = gain.GainedUpdate(parts.update)
    update.gain = gain_net(saved["theta"].reshape(-1))
    training = {"update_and_query": parts.entry["training"]["command"],
                "controller": f"python research/gain_es.py (checkpoint {args.controller})"}
    path = weights.save(Path(args.out), args.name, (update, parts.query), L2L_ZO_GAIN, training)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
