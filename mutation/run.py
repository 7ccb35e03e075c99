"""Run mutmut over one module of the security core, in a scratch copy of the repository.

Usage (from the repository root, with the ``mutation`` extra installed)::

    python mutation/run.py verifier            # one module of mutation/modules.toml
    python mutation/run.py verifier --results  # the last run's survivors and summary
    python mutation/run.py verifier --show NAME
    python mutation/run.py verifier --rerun NAME [NAME ...]  # after adding tests

mutmut reads its settings from ``pyproject.toml`` in its working directory and imports the
code from ``mutants/<package>``, so each module gets its own scratch directory
(``mutation/.work/<name>``, ignored by git) holding a copy of both packages side by side (the
middleware's package moves from ``middleware/`` to the top, where mutmut finds it), the tests,
and a ``pyproject.toml`` with only this module's ``[tool.mutmut]`` settings. The worktree is
never mutated, so editing tests while a run goes on is safe. One worker by default: the
machines this project runs on have two cores.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "mutation"
#: repository folder -> folder in the scratch copy
PACKAGES = {
    "flask_licensechain": "flask_licensechain",
    "middleware/licensechain_middleware": "licensechain_middleware",
}


def _scratch_path(repo_path: str) -> str:
    for source, target in PACKAGES.items():
        if repo_path.startswith(source + "/"):
            return target + repo_path[len(source) :]
    raise SystemExit(f"{repo_path} is not in a package of {sorted(PACKAGES)}")


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare(name: str, module: dict[str, object], fresh: bool) -> Path:
    work = HERE / ".work" / name
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, target in PACKAGES.items():
        shutil.rmtree(work / target, ignore_errors=True)
        shutil.copytree(ROOT / source, work / target, ignore=ignore)
    shutil.rmtree(work / "tests", ignore_errors=True)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pytest_ini = project["tool"]["pytest"]["ini_options"]
    tests = [str(t) for t in module["tests"]]  # type: ignore[attr-defined]
    missing = [t for t in tests if t.startswith("tests/") and not (ROOT / t).exists()]
    if missing:  # e.g. measuring an older checkout, before these files were written
        print("not in this checkout, left out:", *missing)
        tests = [t for t in tests if t not in missing]
    (work / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        f"testpaths = {_toml_list(pytest_ini['testpaths'])}\n"
        f"timeout = {pytest_ini['timeout']}\n"
        f"markers = {_toml_list(pytest_ini['markers'])}\n\n"
        "[tool.mutmut]\n"
        f"source_paths = {_toml_list(sorted(PACKAGES.values()))}\n"
        f"only_mutate = {_toml_list([_scratch_path(str(module['path']))])}\n"
        f"pytest_add_cli_args = {_toml_list(['-p', 'no:cacheprovider', '-q'])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        "use_git_change_detection = false\n"
    )
    return work


#: Writes one JSON line per mutant: its name, status and its diff with the whole function as
#: context (one process, where ``mutmut show`` would start one per mutant).
_DUMP = """
import difflib, functools, json
from mutmut.mutation import diff_apply
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
diff_apply.unified_diff = functools.partial(difflib.unified_diff, n=100_000)
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    for name, code in data.exit_code_by_key.items():
        status = status_by_exit_code[code]
        diff = [] if status == "killed" else get_diff_for_mutant(name, path=path).splitlines()[3:]
        print(json.dumps({"name": name.rpartition(".")[2], "status": status, "diff": diff}))
"""


class _WithoutLogText(ast.NodeTransformer):
    """Drops the log-text arguments of the calls named in ``log_calls``."""

    def __init__(self, log_calls: dict[str, int]) -> None:
        self.log_calls = log_calls

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        index = self.log_calls.get(ast.unparse(node.func))
        if index == 0:
            node.args, node.keywords = [], []
        elif index is not None:
            node.args = node.args[:index] + node.args[index + 1 :]
        return node


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def log_text_only(diff: list[str], log_calls: dict[str, int]) -> bool:
    """True when the mutant changes only what a log line says.

    ``log_calls`` maps a callee as written (``"_reject"``, ``"log.info"``) to the position of
    its one log-text argument (``_reject(check, detail, reason)``: 1); ``0`` means every
    argument is log text (a logging call). The mutant's line and the original one are
    compared with those arguments left out: equal means only log text changed. ``diff``
    holds the whole function (context lines start with a space).
    """
    if not log_calls:
        return False
    old = _parse("\n".join(line[1:] for line in diff if line[:1] in (" ", "-")))
    new = _parse("\n".join(line[1:] for line in diff if line[:1] in (" ", "+")))
    if old is None or new is None:
        return False
    strip = _WithoutLogText(log_calls)
    return ast.dump(strip.visit(old)) == ast.dump(strip.visit(new))


def report(name: str, module: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, int]:
    """Classify the last run's mutants, print the survivors and one summary line."""
    out = subprocess.run(
        [sys.executable, "-c", _DUMP], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout
    log_calls: dict[str, int] = module.get("log_calls", {})
    equivalent: dict[str, str] = module.get("equivalent", {})
    counts = dict.fromkeys(("mutants", "killed", "log_text", "equivalent", "survived"), 0)
    not_run = 0
    for line in out.splitlines():
        mutant = json.loads(line)
        if mutant["status"] == "not checked":  # an interrupted run: left out of the figures
            not_run += 1
            continue
        counts["mutants"] += 1
        if mutant["status"] in ("killed", "timeout"):
            counts["killed"] += 1
            continue
        if mutant["name"] in equivalent:
            counts["equivalent"] += 1
            continue
        if log_text_only(mutant["diff"], log_calls):
            counts["log_text"] += 1
            continue
        counts["survived"] += 1
        print(f"## {mutant['name']}: {mutant['status']}")
        print("\n".join(d for d in mutant["diff"] if d[:1] in "+-"))
    judged = counts["mutants"] - counts["log_text"] - counts["equivalent"]
    score = 100.0 * counts["killed"] / judged if judged else 100.0
    print(
        f"{name}: {counts['mutants']} mutants, {counts['killed']} killed, "
        f"{counts['log_text']} message text only, {counts['equivalent']} equivalent, "
        f"{counts['survived']} not killed: {score:.1f}% of the rest killed"
        + (f" ({not_run} not run yet)" if not_run else "")
    )
    return counts


def main() -> int:
    modules = tomllib.loads((HERE / "modules.toml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", choices=sorted(modules))
    parser.add_argument("--max-children", type=int, default=1, help="parallel workers (1)")
    parser.add_argument("--keep", action="store_true", help="reuse the last run's results")
    parser.add_argument("--results", action="store_true", help="list survivors of the last run")
    parser.add_argument("--show", metavar="MUTANT", help="print one mutant's diff")
    parser.add_argument(
        "--rerun", nargs="+", metavar="MUTANT", help="run these mutants again on today's tests"
    )
    args = parser.parse_args()
    mutmut = [sys.executable, "-m", "mutmut"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    work = HERE / ".work" / args.module
    if args.show:
        return subprocess.call([*mutmut, "show", args.show], cwd=work, env=env)
    if args.results:
        report(args.module, modules[args.module], work, env)
        return 0
    work = prepare(args.module, modules[args.module], fresh=not (args.keep or args.rerun))
    code = subprocess.call(
        [*mutmut, "run", "--max-children", str(args.max_children), *(args.rerun or ())],
        cwd=work,
        env=env,
    )
    if code == 0:
        report(args.module, modules[args.module], work, env)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
