"""Test-session setup: 8 simulated CPU devices for the SPMD tests.

XLA reads the flag when the CPU backend starts (lazily, at the first computation), so
setting it here, before any test module runs, gives every test 8 host devices; the
single-device tests simply use the first one.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
