"""The package as users get it: the wheel's contents, a non-editable install, import without
fcntl (Windows), and the README's commands."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What a clean checkout lacks: git's data, the ignored build outputs, caches and results.
NOT_IN_A_CHECKOUT = {".git", "build", "dist", ".venv", ".hypothesis", ".pytest_cache",
                     "__pycache__", "benchmarks/results", "pretrained/checkpoints"}

SMOKE = """
import importlib.util, warnings, numpy as np, zominimize
warnings.simplefilter("ignore")
res = zominimize.minimize(lambda x: float(x @ x), np.ones(20), options={"seed": 0})
import zominimize.pretrained, pathlib
shipped = sorted(p.name for p in pathlib.Path(zominimize.pretrained.__file__).parent.iterdir())
print(zominimize.__file__)
torch = importlib.util.find_spec("torch") is not None
print(res.fun < 20.0, res.method if torch else "l2l-zo",
      all(f in shipped for f in ("manifest.json", "l2l-zo.pt", "l2l-zo.toml")))
"""


def test_installed_package_works_outside_the_source_tree(tmp_path):
    out = subprocess.run([sys.executable, "-c", SMOKE], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": ""})
    if out.returncode != 0 and "No module named 'zominimize" in out.stderr:
        pytest.skip("zominimize is not installed (run from the source tree only)")
    assert out.returncode == 0, out.stderr
    location, summary = out.stdout.strip().splitlines()
    if Path(location).resolve().is_relative_to(REPO):
        pytest.skip("zominimize is installed in editable mode")
    assert summary == "True l2l-zo True"  # the shipped weights run from the install


def test_ci_runs_the_readme_test_command_and_the_wheel_smoke_test():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(block) == 2, "the README opens with exactly two set-up commands"
    bench, tests = block
    assert "benchmarks --quick" in bench
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert tests in ci
    assert ci[-1] == ".ci/wheel-smoke"


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a clean copy of the source tree (setuptools would also pack whatever an
    earlier in-tree build left in build/lib), built offline with this environment's
    setuptools."""
    def ignore(folder, names):
        rel = Path(folder).relative_to(REPO)
        return [n for n in names if n.endswith(".egg-info")
                or (rel / n).as_posix() in NOT_IN_A_CHECKOUT or n in NOT_IN_A_CHECKOUT]
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=ignore)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path), "."],
                         cwd=src, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return next(tmp_path.glob("zominimize-*.whl"))


def test_wheel_holds_every_module_and_the_shipped_weights(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    modules = {f"zominimize/{p.relative_to(REPO / 'zominimize').as_posix()}"
               for p in (REPO / "zominimize").rglob("*.py")}
    assert modules - set(names) == set(), "modules of the source tree missing from the wheel"
    weights = {f"zominimize/pretrained/{p.name}" for p in (REPO / "pretrained").glob("*")
               if p.suffix in {".py", ".json", ".pt", ".toml", ".md"}}
    assert {"zominimize/pretrained/manifest.json", "zominimize/pretrained/l2l-zo.pt",
            "zominimize/train/__main__.py"} <= weights | modules
    assert weights - set(names) == set(), "shipped weight files missing from the wheel"
    assert not [n for n in names if re.search(r"(^|/)(experiments|tests|benchmarks)/", n)]
    # the exact file list, as CI checks it (.ci/check-wheel.py: nothing extra, and every
    # weight file the manifest names)
    check = subprocess.run([sys.executable, str(REPO / ".ci" / "check-wheel.py"), str(wheel),
                            str(REPO)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


WITHOUT_FCNTL = """
import sys
sys.modules["fcntl"] = None  # as on Windows: import fcntl raises ImportError
import importlib.util, warnings, numpy as np, zominimize
warnings.simplefilter("ignore")
res = zominimize.minimize(lambda x: float(x @ x), np.ones(10), method="zo-adamm",
                          options={"seed": 0, "maxiter": 50})
assert res.fun < 10.0 and res.method == "zo-adamm", res
if importlib.util.find_spec("torch") is not None:
    from zominimize.learned import weights
    entry, tensors = weights.load(None, "l2l-zo")
    res = zominimize.minimize(lambda x: float(x @ x), np.ones(10), method="l2l-zo",
                              options={"seed": 0, "maxiter": 50})
    assert res.method == "l2l-zo" and res.fun < 10.0, res
print(sys.modules["fcntl"])
"""


def test_import_and_use_without_fcntl():
    out = subprocess.run([sys.executable, "-c", WITHOUT_FCNTL], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
