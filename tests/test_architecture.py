"""The layering host -> drivers -> firmware_models -> opu (docs/architecture.md) holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_are_respected():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


def test_opu_package_does_no_io():
    """opu/ is pure computation: no sockets, files, subprocesses or network clients."""
    forbidden = ("import socket", "import subprocess", "import pyvisa", "open(", "urllib", "requests")
    for path in (ROOT / "opu").rglob("*.py"):
        text = path.read_text()
        for token in forbidden:
            assert token not in text, f"{path.relative_to(ROOT)} uses {token!r}"
