"""Check a zominimize wheel against the source tree it was built from.

Usage: python .ci/check-wheel.py WHEEL SOURCE_TREE

The wheel must hold exactly: every file of SOURCE_TREE/zominimize/ (its modules at any
depth and py.typed; no caches), the top-level files of SOURCE_TREE/pretrained/ that ship
(``__init__.py``, ``*.json``, ``*.pt``, ``*.toml``, ``*.md``) under zominimize/pretrained/,
including every weight file the manifest names, and its .dist-info; so nothing from
pretrained's subfolders (experiments/, checkpoints/), tests/ or benchmarks/. Prints what
is missing or extra and exits 1 if anything is.
"""

import json
import sys
import zipfile
from pathlib import Path

PRETRAINED = {".py", ".json", ".pt", ".toml", ".md"}


def expected(src: Path) -> set[str]:
    """The wheel paths of the files that must ship from the source tree ``src``."""
    package = {f"zominimize/{p.relative_to(src / 'zominimize').as_posix()}"
               for p in (src / "zominimize").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
               and not p.name.startswith(".")}
    weights = {f"zominimize/pretrained/{p.name}" for p in (src / "pretrained").iterdir()
               if p.is_file() and p.suffix in PRETRAINED}
    return package | weights


def problems(wheel: Path, src: Path) -> list[str]:
    """What is wrong with ``wheel`` (empty if nothing)."""
    with zipfile.ZipFile(wheel) as z:
        names = {n for n in z.namelist() if not n.split("/")[0].endswith(".dist-info")}
        manifest = json.loads(z.read("zominimize/pretrained/manifest.json")
                              if "zominimize/pretrained/manifest.json" in names else "{}")
    want = expected(src)
    named = {f"zominimize/pretrained/{e['file']}" for e in manifest.get("weights", {}).values()}
    out = [f"missing: {n}" for n in sorted(want - names)]
    out += [f"not in the source tree's package: {n}" for n in sorted(names - want)]
    out += [f"named by the manifest, not shipped: {n}" for n in sorted(named - names)]
    if not manifest:
        out.append("no zominimize/pretrained/manifest.json")
    return out


if __name__ == "__main__":
    wheel, src = Path(sys.argv[1]), Path(sys.argv[2])
    found = problems(wheel, src)
    print("\n".join(found) if found else f"{wheel.name}: {len(expected(src))} files, as the "
          f"source tree has them")
    sys.exit(1 if found else 0)
