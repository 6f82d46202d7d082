"""Run every benchmark in bench/ one after the other (``make bench``).

Each benchmark writes ``bench/results/<name>.json`` and prints its ratios. Benchmarks run
sequentially so that they do not compete for the two cores; a failing one is reported and the
others still run (the exit status is non-zero if any failed).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# fastest first; lightonml_train and dfa train for minutes, robustness (full configuration) for
# hours on a CPU
ORDER = ["physics", "driver", "calibration", "tm", "lightonml_train", "dfa", "robustness"]


def main() -> int:
    scripts = [BENCH / f"{name}.py" for name in ORDER if (BENCH / f"{name}.py").exists()]
    failed = []
    for script in scripts:
        print(f"\n=== bench/{script.name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"--- bench/{script.name}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
