"""The machine a benchmark ran on, recorded in its JSON so that figures from different CPUs are never
mixed up: CPU model, vector extensions (from /proc/cpuinfo flags), cores, load average, library
versions and the BLAS numpy uses.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: vector extensions worth naming (x86 flags of /proc/cpuinfo; ARM "Features" use asimd, sve, sve2)
VECTOR_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "sve", "sve2",
)


def cpu_info(cpuinfo: str | None = None) -> dict:
    """Model name and vector extensions of the first CPU in ``/proc/cpuinfo`` (or the given text)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    vector = [f for f in VECTOR_FLAGS if f in flags]
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sve" if "sve" in flags else (
        "neon" if "asimd" in flags else "baseline")
    return {"cpu_model": model or platform.processor() or platform.machine(), "vector_extensions": vector,
            "widest_vector_isa": isa}


def machine_info() -> dict:
    """cpu_info() plus cores, load average, Python/JAX/numpy versions and numpy's BLAS."""
    import jax
    import numpy as np

    info = cpu_info()
    info["cores"] = os.cpu_count()
    try:
        info["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average_1_5_15"] = None
    info["python"] = platform.python_version()
    info["jax"] = jax.__version__
    info["numpy"] = np.__version__
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # informational only
        info["numpy_blas"] = None
    info["xla_flags"] = os.environ.get("XLA_FLAGS")
    info["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE")
    return info
