"""Sphinx configuration of the zominimize documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(needs ``pip install "sphinx>=7" "numpydoc>=1.6" "myst-parser>=2"``). Nothing is
fetched from the network: no intersphinx, no external images.
"""

import os
import sys

# Document the checkout next to this folder, installed or not.
sys.path.insert(0, os.path.abspath(".."))

import zominimize  # noqa: E402

project = "zominimize"
author = "the zominimize developers"
copyright = "2026, the zominimize developers"
version = release = zominimize.__version__

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# autodoc: the public API only, documented in the order of the source.
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_mock_imports = []

# numpydoc: the class pages list their methods through autodoc (:members:), and the
# docstrings are not validated against numpydoc's style checks at build time.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

# MyST: Markdown pages; heading anchors so that [text](#section) links work.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

html_theme = "alabaster"
html_title = f"zominimize {release}"
html_static_path = []

