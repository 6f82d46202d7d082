"""Shared pytest options and import path.

``--device-uri URI`` runs the driver conformance suite (tests/drivers) against that device: a VISA
resource string of real hardware, or a ``sim...`` URI; without it those tests are skipped.
"""

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
