"""Command line of the benchmark suite: ``python -m benchmarks [--quick | --full]``."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from benchmarks import speed

SUITES = {"speed": speed.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the short run (default)")
    size.add_argument("--full", action="store_true", help="the long run")
    parser.add_argument("--only", choices=sorted(SUITES), action="append",
                        help="run only these suites (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="folder for the JSON records")
    args = parser.parse_args(argv)
    quick = not args.full
    records = {"quick": quick, "python": platform.python_version(),
               "machine": platform.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in args.only or sorted(SUITES):
        records[name] = SUITES[name](quick=quick)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{'quick' if quick else 'full'}.json"
    path.write_text(json.dumps(records, indent=2))
    print(f"\nrecords written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
