"""A controller stage variant around the shipped l2l-zo nets, without retraining stage 1.

Loads ``pretrained/l2l-zo.toml``, changes keys of its ``[controller]`` table (``--set
key=value``, values as TOML), puts the shipped UpdateRNN and QueryRNN into the trainer
(the controller from its initial weights) and runs only the controller stage, then writes
the weight set to ``--out``, for research/lr_sensitivity.py ``--option weights=FOLDER``.
``--seed`` changes the seed of the stage's draws (tasks, lr factors, ES noise) alone, to
measure how far one ES run's controller moves the results. The shipped QueryRNN is kept as
it is (the query stage does not run). (The experiment log's runs over 200 and 1,000
iterations used ``--horizons 200,1000``, at commit f5c4ee8, which chose each batch's
length by its seed; ``--set 'steps=[200, 1000]'`` now draws it in the package's stage.)
Run from the repository root::

    python research/controller_variant.py --out research/runs/controller-far \\
        --set 'x_scale_range=[0.0, 2.0]' --threads 2
    python research/controller_variant.py --out research/runs/controller-horizons \\
        --set 'steps=[200, 1000]' --threads 2
"""
import argparse
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zominimize.learned import gain, weights  # noqa: E402
from zominimize.train.config import load_config  # noqa: E402
from zominimize.train.trainer import Trainer  # noqa: E402


def load_shipped_nets(trainer: Trainer) -> None:
    """Put the shipped l2l-zo UpdateRNN and QueryRNN into ``trainer``'s nets, and its
    controller back to the initial weights (the hand-written rules)."""
    entry, tensors = weights.load()
    shipped = {k: v for k, v in tensors["update"].items() if not k.startswith("gain.")}
    trainer.update_net.rnn.load_state_dict({k[len("rnn."):]: v for k, v in shipped.items()})
    trainer.query_net.load_state_dict(tensors["query"])
    trainer.update_net.gain.load_state_dict(gain.GainNet().state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, help="the controller stage's seed (default: the "
                        "config's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config("pretrained/l2l-zo.toml")
    changes = tomllib.loads("\n".join(args.set))
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    config = replace(config, controller=replace(config.controller, **changes),
                     query_stage=replace(config.query_stage, iterations=0, average_last=0))
    trainer = Trainer(config, Path(args.out))
    if args.seed is not None:
        trainer.controller.gen.manual_seed(args.seed)
    load_shipped_nets(trainer)
    trainer.progress["stage"] = "controller"
    trainer.optimizer = None
    trainer.run(report=lambda line: print(line, flush=True))
    trainer.write_weights("python research/controller_variant.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
