"""Default-lr attack finals on the 19 foolbox images that the goals run attacks (seed 0).

By default coord-adamm (kappa 0.1, limit 5, start -2.3) and zo-adamm; ``--option
NAME=VALUE`` passes an option to each method that has it (``weights=FOLDER``: a weight set
for the learned methods). Run from the repository root::

    python research/attack_images.py
    python research/attack_images.py --methods l2l-zo --option weights=FOLDER
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.problems.attack import correct_images  # noqa: E402
from research import adaptive_rules, lr_sensitivity  # noqa: E402

COORD_OPTIONS = {"kappa": 0.1, "limit": 5.0, "start": -2.3, "beta_z": 0.9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="coord-adamm,zo-adamm")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    adaptive_rules.register_methods()
    extra = {name: lr_sensitivity._value(value) for name, value in
             (item.split("=", 1) for item in args.option)}
    images = correct_images("foolbox", 19)
    for method in args.methods.split(","):
        options = {**(COORD_OPTIONS if method == "coord-adamm" else {}), **extra}
        finals = [lr_sensitivity.final_loss(
            method, {"family": "attack", "image": i, "source": "foolbox"}, 0, 1.0, options)
            for i in images]
        print(method, "median", np.median(finals), "mean", np.mean(finals),
              " ".join(f"{v:.2f}" for v in finals), flush=True)


if __name__ == "__main__":
    main()
