"""Package discovery only; everything else is in pyproject.toml.

``modeling/`` sits at the top level (transformers' layout) but installs as
``hf_sslviews.modeling`` (``package-dir`` in pyproject.toml). The package list is found from the
folders, not kept by hand: a new ``modeling/<method>/`` or ``hf_sslviews/<part>/`` is installed
without touching this file.
"""

from setuptools import find_namespace_packages, setup

# Namespace discovery also lists folders without an __init__.py (the ``evaluate`` metric modules
# under evaluation/metrics/): setuptools warns "Package would be ignored" about folders of .py
# files that are only package data.
_SKIP = ["*__pycache__*"]
packages = (
    ["hf_sslviews", "hf_sslviews.modeling", "hf_sslviews.model_cards"]
    + [f"hf_sslviews.{name}" for name in find_namespace_packages("hf_sslviews", exclude=_SKIP)]
    + [f"hf_sslviews.modeling.{name}" for name in find_namespace_packages("modeling", exclude=_SKIP)]
)

setup(packages=packages)
