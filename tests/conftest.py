"""Shared pytest options and import path.

``--device-uri URI`` runs the driver conformance suite (tests/drivers) against that device: a VISA
resource string of real hardware, or a ``sim...`` URI; without it those tests are skipped.
"""

import os
import sys
from pathlib import Path

# pytest puts tests/ on sys.path (rootdir-relative imports); tests/drivers would then shadow the
# `drivers` package as a namespace package. The repository root first keeps the real packages first.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
# shared test helpers that live in tests/ itself (flaky_device)
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.append(_TESTS)


def pytest_addoption(parser):
    parser.addoption(
        "--device-uri",
        action="store",
        default=None,
        metavar="URI",
        help="run tests/drivers conformance tests against this device (drivers.connect URI)",
    )


if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    import pytest

    @pytest.fixture(autouse=True)
    def _retrace_jitted_functions_for_mutmut():
        """mutmut's statistics pass (bench/mutation.py) records which tests call each function; a
        jitted function runs its Python body only when traced, once per process. Clearing JAX's
        caches before each test makes every test that uses a kernel trace it, and be recorded."""
        import jax

        jax.clear_caches()
        yield
