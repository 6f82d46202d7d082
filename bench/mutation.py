"""Mutation testing of the modules whose mistakes would silently corrupt results (``make mutation``).

Runs mutmut (docs/testing.md says why mutmut) once per target module, one module at a time, in a
scratch copy of the repository under ``build/mutation/<module>/``:

* only that module is mutated (mutmut ``only_mutate``); mutmut runs, for each mutant, only the tests
  that called the mutated function in its statistics pass (its own per-function test selection),
  drawn from a short, fast list of test files per module (:data:`TARGETS`);
* functions under a decorator (the jitted camera and medium kernels, properties) are invisible to
  mutmut 3, which skips decorated functions. In the scratch copy, and only there, each such
  ``@dec def f`` is rewritten to ``def f`` followed by ``f = dec(f)`` - the same object at run time -
  so that mutmut mutates their bodies too;
* a jitted function is traced once per process, so mutmut's statistics pass would credit only the
  first test that traced it. With ``MUTANT_UNDER_TEST=stats`` tests/conftest.py clears JAX's caches
  before each test: every test that runs a kernel is recorded as covering it.

Scores: ``score_<module> = killed / (total - equivalent)``, with the equivalent mutants listed (with
a one-line reason each) in ``docs/testing.md``'s table, written to ``bench/results/mutation.json``.
Timeouts count as killed (the mutant made the tests hang); "no tests" mutants count as survivors.

    python bench/mutation.py                      # every module, smallest first
    python bench/mutation.py --module encoding    # one module
    python bench/mutation.py --report             # recompute the scores from the finished runs

Not part of ``make test`` or CI: it takes tens of minutes per module on 2 cores. Changing a module's
test list in :data:`TARGETS` makes mutmut forget that module's verdicts (its statistics depend on
it): put new tests in files already listed, or run the module (or its sample) again.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
RESULTS = ROOT / "bench" / "results" / "mutation.json"
TESTING_DOC = ROOT / "docs" / "testing.md"
PACKAGES = ("opu", "host", "drivers", "firmware_models")

#: module key -> (path, fast test files whose tests may cover it), smallest module first
TARGETS: dict[str, tuple[str, list[str]]] = {
    "encoding": ("opu/encoding.py", ["tests/physics/test_phys_encoding.py",
                                     "tests/physics/test_phys_inputs.py"]),
    "feedback": ("host/train/feedback.py", ["tests/train/test_trn_feedback.py"]),  # no device, no training
    "medium": ("opu/medium.py", ["tests/physics/test_phys_phasor.py", "tests/physics/test_phys_medium.py",
                                 "tests/physics/test_phys_rng.py",
                                 "tests/physics/test_phys_recovered_medium.py",
                                 "tests/physics/test_phys_golden.py"]),  # the values, bit for bit
    "camera": ("opu/camera.py", ["tests/physics/test_phys_fixed_pattern.py",
                                 "tests/physics/test_phys_camera.py", "tests/physics/test_phys_golden.py",
                                 "tests/physics/test_phys_buckets.py"]),
    "linear": ("opu/linear.py", ["tests/physics/test_phys_linear_contract.py",
                                 "tests/physics/test_phys_linear.py",
                                 "tests/physics/test_phys_projection_scale.py"]),
    "calibration": ("host/calibration", ["tests/calibration/test_cal_stats.py",
                                         "tests/calibration/test_cal_units.py",
                                         "tests/calibration/test_cal_plots.py",
                                         "tests/calibration/test_cal_stages.py",
                                         "tests/calibration/test_cal_edges.py",
                                         "tests/calibration/test_cal_roundtrip.py"]),
    # the newer modules whose mistakes corrupt results silently: a privacy guarantee or a retrieved
    # matrix that is wrong still prints a number
    "privacy": ("host/privacy", ["tests/privacy/test_prv_accountant.py",
                                 "tests/privacy/test_prv_mechanism.py", "tests/privacy/test_prv_certify.py",
                                 "tests/privacy/test_prv_audit.py", "tests/privacy/test_prv_step.py",
                                 "tests/privacy/test_prv_plan.py", "tests/privacy/test_prv_units.py"]),
    "tm": ("host/tm", ["tests/tm/test_tm_retrieval.py", "tests/tm/test_tm_units.py"]),
    # the optical layer in the forward path and the attacks that judge it: a wrong surrogate or a
    # lax attack reports robustness that is not there
    "robust": ("host/robust", ["tests/robust/test_optical.py", "tests/robust/test_attacks.py",
                               "tests/robust/test_adversarial_training.py",
                               "tests/robust/test_cnn_opu_training.py", "tests/robust/test_cli.py"]),
    # the Transformer scaling study (issue 10): a wrong FLOP count or envelope moves the fitted exponent that
    # the frontier comparison of bp and DFA rests on, and still draws a straight line
    "lm_flops": ("host/lm/flops.py", ["tests/lm/test_lm_model.py"]),
    "lm_frontier": ("host/lm/frontier.py", ["tests/lm/test_lm_frontier.py"]),
    # a sweep's table: a wrong mean, spread or grouping over seeds is a wrong conclusion of the sweep
    "sweep_table": ("host/sweep/table.py", ["tests/sweep/test_sweep_table.py"]),
}


def undecorate(source: str) -> str:
    """Rewrite every decorated function ``@d1 @d2 def f`` as ``def f`` + ``f = d1(d2(f))``.

    Equivalent at run time (decorators apply bottom-up to the defined function); staticmethod and
    classmethod are left alone (mutmut handles them)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (first decorator line, def line, end line, assignment)
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.decorator_list:
            continue
        names = [ast.get_source_segment(source, d) for d in node.decorator_list]
        if names in (["staticmethod"], ["classmethod"]):
            continue
        expr = node.name
        for d in reversed(names):
            expr = f"{d}({expr})"
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)
        first = min(d.lineno for d in node.decorator_list)
        edits.append((first, node.lineno, node.end_lineno, f"{indent}{node.name} = {expr}\n"))
    for first, def_line, end, assign in sorted(edits, reverse=True):
        lines.insert(end, assign)
        del lines[first - 1 : def_line - 1]
    return "".join(lines)


def _scratch(key: str) -> Path:
    path, tests = TARGETS[key]
    work = WORK / key
    if work.exists():
        # keep mutmut's cache (mutants/) so that an interrupted run continues; refresh the sources
        for name in (*PACKAGES, "tests"):
            shutil.rmtree(work / name, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    for name in (*PACKAGES, "tests"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    targets = sorted((work / path).rglob("*.py")) if (work / path).is_dir() else [work / path]
    for f in targets:
        f.write_text(undecorate(f.read_text()))
    package = path.split("/")[0]
    others = [p for p in PACKAGES if p != package]
    only = f"{path}/*.py" if (ROOT / path).is_dir() else path
    config = (ROOT / "pyproject.toml").read_text()
    config = config.split("\n[tool.mutmut]")[0]
    config += f"""
[tool.mutmut]
source_paths = ["{package}"]
only_mutate = ["{only}"]
also_copy = {json.dumps(others)}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]
pytest_add_cli_args_test_selection = {json.dumps(tests)}
process_isolation = "forkserver"
forkserver_warmup = "collect"
timeout_multiplier = 8.0
timeout_constant = 60.0
use_git_change_detection = false
"""
    (work / "pyproject.toml").write_text(config)
    return work


def _env() -> dict[str, str]:
    # a persistent compilation cache: each mutant runs in a fresh worker, which would otherwise
    # recompile every (unchanged) kernel its tests use
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONDONTWRITEBYTECODE": "1",
            "JAX_COMPILATION_CACHE_DIR": str(WORK / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def run_module(key: str, max_children: int, sample: int | None = None, seed: int = 0,
               rerun_survivors: bool = False) -> None:
    """mutmut over module ``key``: every mutant, or (``sample``) a random sample of them, or
    (``rerun_survivors``) the survivors of earlier runs again, after new tests were written."""
    work = _scratch(key)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    t0 = time.time()
    names: list[str] = []
    if rerun_survivors:
        names = sorted(n for n, v in _statuses(key).items() if v in ("survived", "no tests", "suspicious"))
        print(f"[mutation] {key}: re-checking {len(names)} survivors", flush=True)
        if not names:
            return
    elif sample is not None:
        # generate the mutants and the statistics only (a filter that matches nothing stops mutmut
        # right after them), then draw the sample among the mutants not checked yet
        subprocess.run([mutmut, "run", "--max-children", str(max_children), "no-such-mutant"], cwd=work,
                       env=_env(), check=False, capture_output=True)
        st = _statuses(key)
        todo = sorted(n for n, v in st.items() if v == "not checked")
        done = len(st) - len(todo)
        names = random.Random(seed).sample(todo, max(0, min(len(todo), sample - done)))
        print(f"[mutation] {key}: {len(st)} mutants, {done} checked before, sampling {len(names)}",
              flush=True)
        if not names:
            return
    print(f"[mutation] {key}: mutmut run in {work}", flush=True)
    subprocess.run([mutmut, "run", "--max-children", str(max_children), *names], cwd=work, env=_env(),
                   check=False)
    print(f"[mutation] {key}: {time.time() - t0:.0f} s", flush=True)


def _statuses(key: str) -> dict[str, str]:
    """mutant name -> status from mutmut's result files of module ``key`` (empty if never run)."""
    work = WORK / key
    out: dict[str, str] = {}
    for meta in (work / "mutants").rglob("*.meta") if (work / "mutants").is_dir() else []:
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            out[name] = _status(code)
    return out


#: mutmut 3's exit-code table (mutmut.stats.status_by_exit_code), copied so that reading the
#: results needs no mutmut configuration; anything else is "suspicious"
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 2: "interrupted", None: "not checked",
           33: "no tests", 34: "skipped", 35: "suspicious", 36: "timeout", 37: "caught by type check",
           -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"}
#: statuses that count as killed: a test failed, the tests hung, or the test process crashed
KILLED = ("killed", "timeout", "segfault", "caught by type check")


def _status(code: int | None) -> str:
    return _STATUS.get(code, "suspicious")


def equivalent_mutants() -> dict[str, str]:
    """mutant name -> reason, from the table in docs/testing.md (rows ``| `name` | reason |``)."""
    if not TESTING_DOC.is_file():
        return {}
    rows = re.findall(r"^\|\s*`([^`]+__mutmut_\d+)`\s*\|\s*(.+?)\s*\|\s*$", TESTING_DOC.read_text(), re.M)
    return dict(rows)


def report() -> dict:
    eq = equivalent_mutants()
    out: dict = {"tool": "mutmut",
                 "definition": "score = killed / (total - equivalent); timeouts and crashes count as "
                 "killed, 'no tests' against the score; a partial run (a random sample) is scored over its "
                 "checked mutants, with the binomial standard error score_<module>_se"}
    for key in TARGETS:
        st = _statuses(key)
        if not st:
            out[f"status_{key}"] = "not run"
            continue
        total = len(st)
        killed = sum(s in KILLED for s in st.values())
        equivalent = sorted(n for n, s in st.items() if n in eq and s not in KILLED)
        survived = sorted(n for n, s in st.items() if s not in (*KILLED, "not checked", "interrupted")
                          and n not in eq)
        checked = sum(s not in ("not checked", "interrupted") for s in st.values())
        complete = checked == total
        # a partial run (stopped, or a random sample) gives an estimate over the checked mutants
        base = total if complete else checked
        eq_checked = len([n for n in equivalent if st[n] not in ("not checked", "interrupted")])
        denom = base - (len(equivalent) if complete else eq_checked)
        score = killed / denom if denom else None
        out[f"score_{key}"] = round(score, 4) if score is not None else None
        if not complete and denom:
            out[f"score_{key}_se"] = round(math.sqrt(score * (1 - score) / denom), 4)
        out[f"counts_{key}"] = {"total": total, "checked": checked, "killed": killed,
                                "equivalent": len(equivalent), "surviving": len(survived)}
        if complete:
            out[f"status_{key}"] = "complete"
        elif checked:
            out[f"status_{key}"] = f"partial: {checked} of {total} mutants checked; score estimated over them"
        else:
            out[f"status_{key}"] = f"not run: {total} mutants generated, none checked"
        out[f"surviving_{key}"] = survived
    return out


def keep_previous(res: dict, path: Path) -> dict:
    """``res`` with each module that has no run here (no scratch directory: another machine, a fresh
    clone) keeping its record from the previous results file, so one module's run never erases the
    others' scores."""
    if not path.is_file():
        return res
    prev = json.loads(path.read_text())
    out = dict(res)
    for key in TARGETS:
        if res.get(f"status_{key}") == "not run" and prev.get(f"status_{key}", "not run") != "not run":
            names = (f"score_{key}", f"score_{key}_se", f"counts_{key}", f"status_{key}", f"surviving_{key}")
            out.update({k: prev[k] for k in names if k in prev})
    return out


def markdown_rows(res: dict) -> str:
    """The BENCHMARKS.md table rows of a report."""
    rows = []
    for key, (path, _) in TARGETS.items():
        c = res.get(f"counts_{key}")
        if c is None:
            rows.append(f"| `{path}` | - | 0 | - | - | - | - | not run |")
            continue
        score = res.get(f"score_{key}")
        se = res.get(f"score_{key}_se")
        shown = "-" if score is None else f"{score:.3f}" + (f" ± {se:.3f}" if se is not None else "")
        rows.append(f"| `{path}` | {c['total']} | {c['checked']} | {c['killed']} | {c['equivalent']} | "
                    f"{c['surviving']} | {shown} | {res[f'status_{key}']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", choices=list(TARGETS), action="append",
                    help="run only this module (repeatable); default: all, smallest first")
    ap.add_argument("--max-children", type=int, default=2, help="parallel mutant workers (default 2)")
    ap.add_argument("--report", action="store_true", help="only recompute the scores from finished runs")
    ap.add_argument("--sample", type=int, default=None, metavar="N",
                    help="check a random sample of N mutants per module (an estimate; for short runs)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample")
    ap.add_argument("--markdown", action="store_true", help="print the BENCHMARKS.md table rows")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="re-check the surviving mutants (after writing tests that should kill them)")
    args = ap.parse_args(argv)
    if not args.report:
        for key in args.module or list(TARGETS):
            run_module(key, args.max_children, args.sample, args.seed, args.rerun_survivors)
    res = keep_previous(report(), RESULTS)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    for k, v in res.items():
        if k.startswith(("score_", "status_")):
            print(f"{k}: {v}")
    if args.markdown:
        print(markdown_rows(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
