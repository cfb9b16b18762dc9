"""Default-lr attack finals on the 19 foolbox images that the goals run attacks (seed 0).

By default coord-adamm (kappa 0.1, limit 5, start -2.3) and zo-adamm; ``--controller
NAME=PATH`` adds a controller saved by gain_es.py as method NAME. Run from the repository
root::

    python research/attack_images.py
    python research/attack_images.py --controller es=research/runs/gain-es-decay/controller.pt \
        --methods es
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.problems.attack import correct_images  # noqa: E402
from research import adaptive_rules, gain_es, lr_sensitivity  # noqa: E402

COORD_OPTIONS = {"kappa": 0.1, "limit": 5.0, "start": -2.3, "beta_z": 0.9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="coord-adamm,zo-adamm")
    parser.add_argument("--controller", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    adaptive_rules.register_methods()
    for item in args.controller:
        name, _, path = item.rpartition("=")
        gain_es.register_method(path, name)
    images = correct_images("foolbox", 19)
    for method in args.methods.split(","):
        options = COORD_OPTIONS if method == "coord-adamm" else {}
        finals = [lr_sensitivity.final_loss(
            method, {"family": "attack", "image": i, "source": "foolbox"}, 0, 1.0, options)
            for i in images]
        print(method, "median", np.median(finals), "mean", np.mean(finals),
              " ".join(f"{v:.2f}" for v in finals), flush=True)


if __name__ == "__main__":
    main()
