"""``python -m zominimize.train --config FILE --out FOLDER``: train and write the weights.

The output folder receives ``<name>.pt`` and its entry in ``manifest.json`` (the
format ``minimize(..., options={"weights": FOLDER})`` loads), plus a resumable
checkpoint ``checkpoints/<name>.pt`` there (``--resume`` continues from it).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from .config import load_config
from .trainer import Trainer


def _bar():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return lambda iterable, desc: tqdm(iterable, desc=desc, file=sys.stderr, leave=False,
                                       disable=None, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zominimize.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="TOML training config")
    parser.add_argument("--out", type=Path, required=True, help="folder for weights and manifest")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    trainer = Trainer(config, args.out)
    if args.resume and trainer.resume():
        print(f"resumed at {trainer.progress['stage']} episode {trainer.progress['episode']}")
    references = trainer.baseline()
    print(f"validation references: {references}")
    trainer.run(bar=_bar())
    command = "python -m zominimize.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    manifest = trainer.write_weights(command, references)
    print(f"weights written: {manifest} ({trainer.progress['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
