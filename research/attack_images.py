"""Default-lr attack finals of coord-adamm (kappa 0.1, limit 5, start -2.3) and zo-adamm on
the 19 foolbox images that the goals run attacks (seed 0). Run from the repository root:
python research/attack_images.py"""
import sys
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from research import adaptive_rules, lr_sensitivity
from benchmarks.problems.attack import correct_images
adaptive_rules.register_methods()
opts = {"kappa": 0.1, "limit": 5.0, "start": -2.3, "beta_z": 0.9}
images = correct_images("foolbox", 19)
for method, options in (("coord-adamm", opts), ("zo-adamm", {})):
    finals = [lr_sensitivity.final_loss(method, {"family": "attack", "image": i, "source": "foolbox"},
                                        0, 1.0, options) for i in images]
    print(method, "median", np.median(finals), "mean", np.mean(finals),
          " ".join(f"{v:.2f}" for v in finals), flush=True)
