"""The layering host -> drivers -> firmware_models -> opu (docs/architecture.md) holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_are_respected():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


#: what opu/ may import: the standard library's pure-computation modules, numpy, jax, pydantic, scipy
#: (the structured medium's host FFTs, scipy.fft) and itself. Anything else (os, io, pathlib, socket,
#: subprocess, pyvisa, urllib, requests, ...) is I/O or a door to it, and fails the test until it is
#: consciously added here.
OPU_ALLOWED_IMPORTS = frozenset({
    "__future__", "abc", "collections", "dataclasses", "enum", "functools", "itertools", "math",
    "numbers", "operator", "typing", "warnings", "numpy", "jax", "pydantic", "scipy",
    # which BLAS numpy loaded and its kernels (opu.model.host_blas_full_width): it inspects the
    # libraries in memory, no file or network I/O
    "threadpoolctl",
})
#: builtins that read, write or load code
OPU_FORBIDDEN_CALLS = frozenset({"open", "input", "print", "exec", "eval", "compile", "__import__",
                                 "breakpoint"})
#: methods that touch files whatever object they are called on (np.load, Path.write_text, ...)
OPU_FORBIDDEN_METHODS = frozenset({"load", "loads_file", "save", "savez", "savez_compressed", "savetxt",
                                   "loadtxt", "genfromtxt", "fromfile", "tofile", "memmap", "read_text",
                                   "write_text", "read_bytes", "write_bytes", "urlopen", "system", "popen"})


def io_violations(source: str, filename: str = "<src>") -> list[str]:
    """Imports outside :data:`OPU_ALLOWED_IMPORTS` and I/O calls in a module's source (AST walk)."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [] if node.level else [node.module or ""]  # relative: opu itself
        else:
            names = []
        out += [f"{filename}:{node.lineno} imports {n}" for n in names
                if n.split(".")[0] not in OPU_ALLOWED_IMPORTS]
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in OPU_FORBIDDEN_CALLS:
                out.append(f"{filename}:{node.lineno} calls {f.id}()")
            if isinstance(f, ast.Attribute) and f.attr in OPU_FORBIDDEN_METHODS:
                out.append(f"{filename}:{node.lineno} calls .{f.attr}()")
    return out


def test_opu_package_does_no_io():
    """opu/ is pure computation: its import graph holds no I/O module and it calls no I/O function."""
    files = sorted((ROOT / "opu").rglob("*.py"))
    assert len(files) >= 10
    bad = [v for p in files for v in io_violations(p.read_text(), str(p.relative_to(ROOT)))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source, found", [
    ("import socket", "imports socket"),
    ("import os.path as p", "imports os.path"),
    ("from urllib.request import urlopen", "imports urllib.request"),
    ("import pyvisa", "imports pyvisa"),
    ("x = open('f')", "calls open()"),
    ("import numpy as np\nnp.load('w.npy')", "calls .load()"),
    ("from pathlib import Path", "imports pathlib"),
    ("__import__('socket')", "calls __import__()"),
])
def test_io_check_catches_violations(source, found):
    assert any(found in v for v in io_violations(source))
    assert io_violations("from .medium import x\nimport numpy as np\nfrom jax import numpy") == []
