"""The README's promises: its quick example prints what the README shows, its status table
lists every status, and the files it points to exist."""

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

import zominimize

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def example_and_output(text: str) -> tuple[str, str]:
    """The README's quick example: the first ```python block that a ```text block follows
    (blank lines between them allowed), and that text block."""
    match = re.search(r"```python\n(.*?)```\s*\n```text\n(.*?)```", text, re.S)
    assert match, "the README has no ```python example followed by its ```text output"
    return match.group(1), match.group(2)


def one_torch_thread():
    """Run with one torch thread, as the test machine's cores are shared (this changes the
    speed, not the printed figures): the package's own context manager, which restores the
    count afterwards; nothing to do without torch."""
    try:
        from zominimize.learned.blocks import one_torch_thread as single
    except ImportError:
        return contextlib.nullcontext()
    return single()


def test_quick_example_prints_what_the_readme_shows():
    code, shown = example_and_output(README)
    if "l2l-zo" in code:  # without torch it would fall back to zo-adamm and print other figures
        pytest.importorskip("torch", reason="the example runs the learned method")
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, one_torch_thread(), \
            contextlib.redirect_stdout(out):
        warnings.simplefilter("always", zominimize.FallbackWarning)
        exec(compile(code, "README.md quick example", "exec"), {"__name__": "readme_example"})
    fallbacks = [str(w.message) for w in caught if issubclass(w.category,
                                                              zominimize.FallbackWarning)]
    assert not fallbacks, fallbacks  # the learned method itself ran
    assert out.getvalue().strip().splitlines() == shown.strip().splitlines()


def test_status_table_lists_every_status():
    section = README[README.index("| status | meaning | success |"):]
    rows = re.findall(r"^\| (-?\d+) \|[^\n]*\| (True|False) \|$", section, re.M)
    listed = {int(code): success == "True" for code, success in rows}
    assert sorted(listed) == sorted(int(s) for s in zominimize.Status)
    successes = {int(zominimize.Status.FTOL), int(zominimize.Status.F_TARGET)}
    assert {code for code, ok in listed.items() if ok} == successes


def test_result_fields_named_in_the_readme():
    for field in ("x", "fun", "nfev", "nit", "status", "success", "message", "x_last",
                  "method", "fallback", "fallback_at", "nfev_nonfinite", "nfev_outliers"):
        assert f"`{field}`" in README, field


def test_linked_files_exist():
    targets = re.findall(r"\]\(([^)#\s]+)\)", README)
    assert targets, "the README links to its figure and docs"
    for target in targets:
        assert (REPO / target).exists(), target


def test_readme_is_short():
    assert 150 <= len(README.splitlines()) <= 250
