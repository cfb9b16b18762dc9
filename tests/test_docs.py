"""The documentation builds with Sphinx, warnings as errors (API reference from the public
docstrings, the Markdown pages, the experiment log included from research/)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("myst_parser")
    out = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(REPO / "docs"), str(tmp_path / "html")],
        cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("minimize", "show_options", "ZOOptimizer", "Status", "method_names",
                 "get_method", "zo_sgd", "zo_signsgd", "zo_adamm", "l2l_zo", "l2l_zo_update",
                 "l2l_zo_query", "l2l_zo_paper", "WeightsError", "FallbackWarning"):
        assert f'id="zominimize.{name}"' in api, name
    assert "guard_patience" in api  # the method callables' option lists are rendered
    log = (tmp_path / "html" / "experiment-log.html").read_text()
    assert "8adf837" in log  # the log from research/ is included
