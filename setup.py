"""The package list for setuptools; everything else (metadata, requirements, package data)
is in setup.cfg.

``zominimize`` and each of its subpackages are found, not listed, so a new subpackage ships
without an edit here. The top-level ``pretrained/`` folder (the shipped weights) installs as
the package ``zominimize.pretrained``; setup.cfg alone cannot combine ``packages = find:``
with a ``package_dir`` that maps one subpackage elsewhere.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["zominimize", "zominimize.*"]) + ["zominimize.pretrained"],
      package_dir={"zominimize.pretrained": "pretrained"})
