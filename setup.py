"""Package discovery: kernels/ is installed as `sharq_jax.kernels`.

A top-level import name `kernels` would collide with an unrelated PyPI package, so the
folder is mapped under our own namespace; every other setting lives in pyproject.toml.
"""

from setuptools import find_packages, setup

_CORE = find_packages(include=["sharq_jax", "sharq_jax.*"])
_KERNELS = ["sharq_jax." + p for p in find_packages(include=["kernels", "kernels.*"])]

setup(packages=_CORE + _KERNELS, package_dir={"sharq_jax.kernels": "kernels"})
