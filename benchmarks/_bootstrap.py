"""Makes `sharq_jax.kernels` importable from a plain checkout (no pip install).

The kernels/ folder is installed as sharq_jax.kernels by setup.py; on a machine where
the package is not installed (the benchmark device), map it by hand.
"""

from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup() -> None:
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  import sharq_jax  # pylint: disable=g-import-not-at-top
  try:
    import sharq_jax.kernels  # pylint: disable=g-import-not-at-top,unused-import
    return
  except ImportError:
    pass
  kdir = os.path.join(ROOT, "kernels")
  spec = importlib.util.spec_from_file_location(
      "sharq_jax.kernels", os.path.join(kdir, "__init__.py"),
      submodule_search_locations=[kdir])
  mod = importlib.util.module_from_spec(spec)
  sys.modules["sharq_jax.kernels"] = mod
  spec.loader.exec_module(mod)
  sharq_jax.kernels = mod
