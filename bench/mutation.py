"""Mutation testing of the hand-derived backwards (tinygradlm/ref) and their Numba twins
(tinygradlm/kernels): plant one plausible bug at a time and check that the tests catch it.

Each mutant changes one spot of one backward function (or of a helper only backwards and their
forwards share), found with ``ast``:

==============  =====================================================================
operator        what changes
==============  =====================================================================
``operator``    ``+`` ↔ ``-``, ``*`` ↔ ``/`` (also in ``+=``, ``*=``, ...)
``drop``        one operand of a sum, a difference, a product or a quotient dropped
``sign``        a unary minus removed
``statement``   an in-place update (``dx *= r``) or a call statement (``np.matmul(...,
                out=dq)``, ``np.add.at(...)``) deleted
``axis``        ``axis=`` 0 ↔ 1, −1 ↔ −2
``keepdims``    ``keepdims=True`` dropped
``transpose``   ``.T`` or ``.swapaxes(...)`` removed, or ``.T`` added to a matmul operand
``index``       a subscript's index variable shifted: ``i`` → ``i + 1``, ``i - 1``
``range``       a ``range(...)`` bound moved by ±1
``slice``       a slice bound moved by ±1
``constant``    an integer constant ±1, a float constant ×2 and ×½ (0.0 → 1.0)
``compare``     ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``; ``not x`` → ``x``
``minmax``      ``max(...)`` ↔ ``min(...)``
==============  =====================================================================

Calls of the argument checks (``upstream``, ``check_*``) are left alone: they test the inputs,
not the math, and have tests of their own.

For each mutant the tool copies the package and the tests into a temporary directory, writes
the mutated module there (the whole module, unparsed from its AST), runs the tests that exercise
it (``-x -q -p no:cacheprovider``, hypothesis's derandomized ``ci`` profile, a per-mutant
timeout) with that copy first on ``sys.path``, and deletes the copy. The working tree is never
modified. A mutant is *killed* (some test failed or crashed), *survived*, *timeout*, or
*equivalent*: it survived and ``bench/mutation_equivalent.json`` lists it with the reason it
cannot change any result (reviewed by hand). The kill rate is (killed + timeout) / (mutants −
equivalent).

Numba caches compiled kernels in ``__pycache__`` beside each source file, keyed by that file's
modification time and size. The tool compiles every kernel once, in a template copy, and starts
each mutant's copy from it (modification times kept): only the mutated module recompiles. A
mutant of ``kernels/_vecmath.py`` drops every cached kernel, because the kernels inline its
helpers and their cache does not notice a change there (its docstring says so).

Too slow for CI (a kernel mutant costs a Numba compile, 10–40 s). Run it on one core::

    python bench/mutation.py --list                                 # the mutants, not run
    python bench/mutation.py --module ref                           # all of tinygradlm/ref
    python bench/mutation.py --module kernels/encoder.py --jobs 1 --results mutants.json
    python bench/mutation.py --module kernels --resume --results mutants.json
    python bench/mutation.py --module kernels --resume --rerun-survivors --results mutants.json
    python bench/mutation.py --summary --results mutants.json       # re-apply the equivalences
    python bench/mutation.py --scope all --module ref/layernorm.py  # forwards too

Results go to a JSON file (``--results``, default ``mutation_results.json``), rewritten after
every mutant, so an interrupted run resumes with ``--resume``. The figures are in
docs/verification.md ("Mutation testing of the backwards"), with the kernels' block sizes and
the tests that reach each boundary.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinygradlm"
EQUIVALENT_FILE = Path(__file__).with_name("mutation_equivalent.json")

# The tests each package's mutants run, fastest and most likely to fail first (-x stops at the
# first failure). test_kernels_exact.py is left out: it compares compiled with cached kernels
# (three full compiles), not the math.
REF_TESTS = [
    "tests/ref/test_ref_gradients.py",
    "tests/ref/test_ref_properties.py",
    "tests/ref/test_ref_autograd.py",
    "tests/ref/test_ref_torch.py",
    "tests/ref/test_ref_conventions.py",
    "tests/ref/test_ref_lora.py",
    "tests/ref/test_ref_errors.py",
]
KERNEL_TESTS = [
    "tests/kernels/test_kernels_match_ref.py",
    "tests/kernels/test_kernels_gradients.py",
    "tests/kernels/test_kernels_conventions.py",
    "tests/kernels/test_kernels_vecmath.py",
    "tests/kernels/test_kernels_adamw.py",
    "tests/kernels/test_kernels_adamw_torch.py",
    "tests/kernels/test_kernel_boundaries.py",
]
# The files written to close the gaps this tool found, run last: a mutant whose first failure
# is in one of them survived every older test, which gives the kill rate before them too.
NEW_TESTS = ("tests/kernels/test_kernel_boundaries.py",)
# Helpers whose mutants count as mutants of a backward: they run inside one (and, being shared,
# inside its forward too).
BACKWARD_HELPERS = {
    "ref/attention.py": {"_heads", "_split_qkv"},
    "kernels/attention.py": {
        "_heads",
        "_causal_blocks",
        "_chunks",
        "_scratch",
        "_view",
        "_causal_scores",
        "_recompute_row",
        "_zero_masked",
    },
    "kernels/gelu.py": {"_sigmoid_2u"},
    "kernels/_vecmath.py": {"row_sum", "row_dot", "row_centered_dot"},
}
KERNEL_LAYERS = {"encoder", "layernorm", "attention", "gelu", "crossentropy", "adamw"}
SKIPPED_MODULES = {"__init__.py", "checks.py", "_checks.py"}
CHECK_CALLS = ("upstream", "check_")


@dataclass
class Mutant:
    id: str  # module::function::operator::original -> mutated#occurrence, stable across runs
    module: str  # relative to tinygradlm/, e.g. "kernels/encoder.py"
    function: str
    line: int
    operator: str
    original: str
    mutated: str
    path: tuple  # where the node sits in the function (fields and indices): to apply it
    candidate: int  # which of node_mutants(node) it is


@dataclass
class Result:
    id: str
    module: str
    function: str
    line: int
    operator: str
    original: str
    mutated: str
    status: str  # killed, survived, timeout, equivalent
    seconds: float
    detail: str  # the first failing test, or why the mutant is equivalent


# ----------------------------------------------------------------------------------------------
# enumerating mutants
# ----------------------------------------------------------------------------------------------


def _plus(node: ast.expr, k: int) -> ast.expr:
    op = ast.Add() if k > 0 else ast.Sub()
    return ast.BinOp(left=copy.deepcopy(node), op=op, right=ast.Constant(abs(k)))


def _number(value: float | int) -> ast.expr:
    if value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(-value))
    return ast.Constant(value)


def _constant_value(node: ast.AST) -> int | float | None:
    """The number a node spells (``3``, ``-1``, ``0.5``), else None (bools are not numbers)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _constant_value(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    return None


SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
COMPARE_SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}
AXIS_SWAPS = {0: 1, 1: 0, -1: -2, -2: -1, 2: 1}


def _binop_mutants(node: ast.BinOp):
    if type(node.op) in SWAPS:
        yield "operator", ast.BinOp(node.left, SWAPS[type(node.op)](), node.right)
    if isinstance(node.op, (ast.Add, ast.Mult)):
        yield "drop", node.left
        yield "drop", node.right
    elif isinstance(node.op, ast.Sub):
        yield "drop", node.left
        yield "drop", ast.UnaryOp(ast.USub(), node.right)
    elif isinstance(node.op, ast.Div):
        yield "drop", node.left
    elif isinstance(node.op, ast.MatMult):
        for side in ("left", "right"):
            operand = getattr(node, side)
            if not (isinstance(operand, ast.Attribute) and operand.attr == "T"):
                transposed = ast.Attribute(operand, "T", ast.Load())
                yield (
                    "transpose",
                    ast.BinOp(
                        **{"left": node.left, "right": node.right, side: transposed}, op=node.op
                    ),
                )


def _call_mutants(node: ast.Call):
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    if name in ("max", "min") and isinstance(func, ast.Name):
        yield "minmax", ast.Call(ast.Name("min" if name == "max" else "max"), node.args, [])
    if name == "swapaxes" and isinstance(func, ast.Attribute):
        yield "transpose", func.value
    if name == "range":
        for i, arg in enumerate(node.args[:2]):
            for k in (1, -1):
                args = [*node.args[:i], _plus(arg, k), *node.args[i + 1 :]]
                yield "range", ast.Call(func, args, node.keywords)
    for i, kw in enumerate(node.keywords):
        value = _constant_value(kw.value)
        rest = node.keywords[:i] + node.keywords[i + 1 :]
        if kw.arg == "axis" and value in AXIS_SWAPS:
            new = ast.keyword("axis", _number(AXIS_SWAPS[value]))
            yield "axis", ast.Call(func, node.args, [*rest[:i], new, *rest[i:]])
        if kw.arg == "keepdims" and value is None and getattr(kw.value, "value", None) is True:
            yield "keepdims", ast.Call(func, node.args, rest)


def _subscript_mutants(node: ast.Subscript):
    index = node.slice
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    for i, part in enumerate(parts):
        shifted = []
        if isinstance(part, ast.Name):
            shifted = [_plus(part, 1), _plus(part, -1)]
            operator = "index"
        elif isinstance(part, ast.Slice):
            operator = "slice"
            for bound in ("lower", "upper"):
                value = getattr(part, bound)
                if value is not None:
                    for k in (1, -1):
                        shifted.append(ast.Slice(**{**vars(part), bound: _plus(value, k)}))
        for new in shifted:
            new_parts = [*parts[:i], new, *parts[i + 1 :]]
            new_index = ast.Tuple(new_parts, ast.Load()) if isinstance(index, ast.Tuple) else new
            yield operator, ast.Subscript(node.value, new_index, node.ctx)


def _constant_mutants(node: ast.Constant):
    if type(node.value) is int:
        yield "constant", _number(node.value + 1)
        yield "constant", _number(node.value - 1)
    elif type(node.value) is float:
        if node.value == 0.0:
            yield "constant", ast.Constant(1.0)
        else:
            yield "constant", ast.Constant(node.value * 2)
            yield "constant", ast.Constant(node.value / 2)


def node_mutants(node: ast.AST):
    """(operator, replacement) pairs for one node; replacement None deletes a statement."""
    if isinstance(node, ast.BinOp):
        yield from _binop_mutants(node)
    elif isinstance(node, ast.AugAssign):
        if type(node.op) in SWAPS:
            yield "operator", ast.AugAssign(node.target, SWAPS[type(node.op)](), node.value)
        yield "statement", None
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        if not _is_check_call(node.value):
            yield "statement", None
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _constant_value(node)
        if value is None:
            yield "sign", node.operand
        elif type(value) is int:  # -1 is one constant, not a sign and a 1
            yield "constant", _number(value + 1)
            yield "constant", _number(value - 1)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "compare", node.operand
    elif isinstance(node, ast.Compare) and len(node.ops) == 1:
        if type(node.ops[0]) in COMPARE_SWAPS:
            swapped = COMPARE_SWAPS[type(node.ops[0])]()
            yield "compare", ast.Compare(node.left, [swapped], node.comparators)
    elif isinstance(node, ast.Attribute) and node.attr == "T":
        yield "transpose", node.value
    elif isinstance(node, ast.Call):
        yield from _call_mutants(node)
    elif isinstance(node, ast.Subscript):
        yield from _subscript_mutants(node)
    elif isinstance(node, ast.Constant):
        yield from _constant_mutants(node)


def _is_check_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    return name.startswith(CHECK_CALLS)


def _walk(node: ast.AST, path: tuple):
    """(path, node) for node and everything below it that a mutant may change, depth first."""
    yield path, node
    if _is_check_call(node) or (
        isinstance(node, ast.UnaryOp) and _constant_value(node) is not None
    ):
        return  # argument checks are not the math; a negative constant is one constant
    for field, value in ast.iter_fields(node):
        if field in ("annotation", "returns", "decorator_list", "type_comment"):
            continue
        if isinstance(node, ast.keyword) and node.arg in ("axis", "keepdims"):
            continue  # mutated as a whole by _call_mutants
        if isinstance(value, ast.AST):
            yield from _walk(value, (*path, (field, None)))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield from _walk(item, (*path, (field, i)))


def _locate(function: ast.AST, path: tuple) -> ast.AST:
    node = function
    for field, index in path:
        node = getattr(node, field) if index is None else getattr(node, field)[index]
    return node


def _replace(function: ast.AST, path: tuple, new: ast.AST) -> None:
    parent = _locate(function, path[:-1])
    field, index = path[-1]
    if index is None:
        setattr(parent, field, new)
    else:
        getattr(parent, field)[index] = new


def target_functions(module: str, scope: str, tree: ast.Module) -> list[ast.FunctionDef]:
    """The module's top-level functions a mutant may change: the backwards and their helpers
    (scope "backward") or every function but the argument checks (scope "all")."""
    helpers = BACKWARD_HELPERS.get(module, set())
    chosen = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("check_"):
            continue
        if scope == "all" or "backward" in node.name or node.name in helpers:
            chosen.append(node)
    return chosen


def function_mutants(module: str, function: ast.FunctionDef) -> list[Mutant]:
    mutants, seen, counts = [], set(), {}
    body = function.body
    start = (
        1
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
        else 0
    )
    for i in range(start, len(body)):
        for path, node in _walk(body[i], (("body", i),)):
            for k, (operator, replacement) in enumerate(node_mutants(node)):
                original = ast.unparse(node)
                mutated = "<deleted>" if replacement is None else ast.unparse(replacement)
                if mutated == original or (path, mutated) in seen:
                    continue
                seen.add((path, mutated))
                key = f"{module}::{function.name}::{operator}::{original} -> {mutated}"
                counts[key] = counts.get(key, 0) + 1
                mutants.append(
                    Mutant(
                        f"{key}#{counts[key]}",
                        module,
                        function.name,
                        node.lineno,
                        operator,
                        original,
                        mutated,
                        path,
                        k,
                    )
                )
    return mutants


def enumerate_mutants(modules: list[str], scope: str) -> list[Mutant]:
    mutants = []
    for module in modules:
        tree = ast.parse((PACKAGE / module).read_text())
        for function in target_functions(module, scope, tree):
            mutants.extend(function_mutants(module, function))
    return mutants


def mutated_source(mutant: Mutant) -> str:
    """The whole module with the mutant applied (unparsed from the AST: comments are gone)."""
    tree = ast.parse((PACKAGE / mutant.module).read_text())
    function = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == mutant.function
    )
    node = _locate(function, mutant.path)
    _, replacement = list(node_mutants(node))[mutant.candidate]
    _replace(function, mutant.path, ast.Pass() if replacement is None else replacement)
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def select_modules(selector: str | None) -> list[str]:
    """Modules under tinygradlm/ref and tinygradlm/kernels matching ``selector`` ("ref",
    "kernels", "kernels/encoder.py", "encoder" for both twins; None: all)."""
    modules = []
    for package in ("ref", "kernels"):
        for path in sorted((PACKAGE / package).glob("*.py")):
            if path.name in SKIPPED_MODULES:
                continue
            module = f"{package}/{path.name}"
            if selector in (None, package, module, path.stem):
                modules.append(module)
    if not modules:
        raise SystemExit(f"mutation.py: no module matches --module {selector!r}")
    return modules


# ----------------------------------------------------------------------------------------------
# running the tests against a mutant
# ----------------------------------------------------------------------------------------------


def tests_for(module: str) -> list[str]:
    """pytest's arguments for a mutant of ``module``: the test files that exist in this
    checkout and, for a kernel of one layer, ``-k <layer>`` (every test of a layer's kernel
    names the layer; the other kernels' tests cannot see the mutant and would only cost time)."""
    chosen = REF_TESTS if module.startswith("ref/") else KERNEL_TESTS
    files = [t for t in chosen if (ROOT / t).exists()]
    layer = Path(module).stem
    if module.startswith("kernels/") and layer in KERNEL_LAYERS:
        return [*files, "-k", layer]
    return files


def _copy_tree(source: Path, target: Path) -> None:
    """The package, the tests and pytest's configuration, modification times kept (Numba's
    cache keys on them)."""
    ignore = shutil.ignore_patterns(".hypothesis", ".pytest_cache")
    for name in ("tinygradlm", "tests"):
        shutil.copytree(source / name, target / name, ignore=ignore)
    shutil.copy2(source / "pyproject.toml", target / "pyproject.toml")


def run_tests(workdir: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """(status, seconds, detail): pytest over ``tests`` with ``workdir``'s package imported."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # TMPDIR inside the copy: a run killed on timeout leaves nothing outside it
    env.update(PYTHONPATH=str(workdir), HYPOTHESIS_PROFILE="ci", TMPDIR=str(workdir))
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(name, "1")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a timeout ends pytest and its children
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return "timeout", time.monotonic() - start, f"no result after {timeout:.0f} s"
    seconds = time.monotonic() - start
    if process.returncode == 0:
        return "survived", seconds, ""
    failed = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    if process.returncode < 0:
        detail = f"crashed with signal {-process.returncode}"
    else:
        detail = failed[0] if failed else output.strip().splitlines()[-1] if output.strip() else ""
    return "killed", seconds, detail[:300]


def run_mutant(mutant: Mutant, template: Path, scratch: Path, timeout: float) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="mutant-", dir=scratch))
    try:
        _copy_tree(template, workdir)
        target = workdir / "tinygradlm" / mutant.module
        if mutant.module == "kernels/_vecmath.py":
            # the kernels inline its helpers, and their cache keys on their own files only
            for cached in (target.parent / "__pycache__").glob("*.nb[ic]"):
                cached.unlink()
        target.write_text(mutated_source(mutant))
        status, seconds, detail = run_tests(workdir, tests_for(mutant.module), timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    fields = {k: v for k, v in asdict(mutant).items() if k not in ("path", "candidate")}
    return Result(**fields, status=status, seconds=round(seconds, 1), detail=detail)


def prepare_template(scratch: Path, modules: list[str]) -> Path:
    """A copy of the unmutated tree whose tests pass, every kernel compiled into its cache."""
    template = scratch / "template"
    template.mkdir()
    _copy_tree(ROOT, template)
    for package in sorted({m.split("/")[0] for m in modules}):
        tests = tests_for(f"{package}/_vecmath.py")  # every test of the package
        status, seconds, detail = run_tests(template, tests, timeout=1800)
        print(f"unmutated {package}: {status} in {seconds:.0f} s {detail}", flush=True)
        if status != "survived":
            raise SystemExit(f"mutation.py: the tests fail without a mutant ({detail})")
    return template


# ----------------------------------------------------------------------------------------------
# the run and its summary
# ----------------------------------------------------------------------------------------------


def load_equivalent() -> dict[str, str]:
    """{mutant id: why it cannot change any result}, reviewed by hand."""
    if not EQUIVALENT_FILE.exists():
        return {}
    return json.loads(EQUIVALENT_FILE.read_text())["equivalent"]


def summarize(results: list[Result]) -> dict:
    """Counts per module and overall, and the kill rate (killed + timeout) / non-equivalent."""
    table: dict[str, dict[str, int]] = {}
    for r in results:
        for key in (r.module, "total"):
            row = table.setdefault(key, dict.fromkeys(("mutants", *STATUSES), 0))
            row["mutants"] += 1
            row[r.status] += 1
        if r.status == "killed" and r.detail.split("::")[0].endswith(NEW_TESTS):
            for key in (r.module, "total"):
                table[key]["killed_by_new_tests"] = table[key].get("killed_by_new_tests", 0) + 1
    for row in table.values():
        counted = row["mutants"] - row["equivalent"]
        caught = row["killed"] + row["timeout"]
        row["kill_rate"] = caught / counted if counted else 1.0
        before = caught - row.get("killed_by_new_tests", 0)
        row["kill_rate_before_new_tests"] = before / counted if counted else 1.0
    return table


STATUSES = ("killed", "timeout", "survived", "equivalent")


def print_summary(results: list[Result]) -> None:
    table = summarize(results)
    header = " ".join(f"{s:>10}" for s in STATUSES)
    print(f"\n{'module':24} {'mutants':>7} {header}  kill rate (before {', '.join(NEW_TESTS)})")
    for module, row in sorted(table.items(), key=lambda kv: kv[0] == "total"):
        counts = " ".join(f"{row[s]:>10}" for s in STATUSES)
        rates = f"{row['kill_rate']:.1%} ({row['kill_rate_before_new_tests']:.1%})"
        print(f"{module:24} {row['mutants']:>7} {counts}  {rates}")
    for r in results:
        if r.status in ("survived", "equivalent"):
            print(f"{r.status}: {r.module}:{r.line} {r.function}: {r.original} -> {r.mutated}")


def write_results(path: Path, results: list[Result]) -> None:
    data = {"summary": summarize(results), "mutants": [asdict(r) for r in results]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def previous_results(path: Path) -> dict[str, Result]:
    """The results of an earlier run, by mutant id."""
    if not path.exists():
        return {}
    return {row["id"]: Result(**row) for row in json.loads(path.read_text())["mutants"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", help='"ref", "kernels", "kernels/encoder.py", "encoder"')
    parser.add_argument("--scope", choices=["backward", "all"], default="backward")
    parser.add_argument("--operator", help="only mutants of this operator (see the table)")
    parser.add_argument("--limit", type=int, help="run at most this many mutants")
    parser.add_argument("--every", type=int, default=1, help="run every k-th mutant (a sample)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--timeout", type=float, help="seconds per mutant (ref 120, kernels 600)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--results", type=Path, default=Path("mutation_results.json"))
    parser.add_argument("--resume", action="store_true", help="keep the results file's mutants")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="run nothing: apply the equivalence table to the results file and print it",
    )
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="with --resume: run again only the mutants that survived (after new tests)",
    )
    return parser.parse_args(argv)


def reclassify(path: Path) -> list[Result]:
    """The results file's mutants, survivors marked equivalent or not by today's table."""
    equivalent = load_equivalent()
    results = list(previous_results(path).values())
    for r in results:
        if r.status in ("survived", "equivalent"):
            r.status = "equivalent" if r.id in equivalent else "survived"
            r.detail = equivalent.get(r.id, "")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summary:
        results = reclassify(args.results)
        write_results(args.results, results)
        print_summary(results)
        return 0
    mutants = enumerate_mutants(select_modules(args.module), args.scope)
    if args.operator:
        mutants = [m for m in mutants if m.operator == args.operator]
    if args.list:
        for m in mutants:
            print(f"{m.module}:{m.line} {m.function} [{m.operator}] {m.original} -> {m.mutated}")
        print(f"{len(mutants)} mutants")
        return 0
    rerun = {"survived", "equivalent", "timeout"} if args.rerun_survivors else set()
    done = previous_results(args.results) if args.resume else {}
    if args.rerun_survivors:
        todo = [m for m in mutants if m.id in done and done[m.id].status in rerun]
    else:
        todo = [m for m in mutants if m.id not in done]
    todo = todo[:: args.every][: args.limit]
    equivalent = load_equivalent()
    # every earlier result is kept, other modules' too: one file can gather a run module by module
    todo_ids = {m.id for m in todo}
    results = [r for r in done.values() if r.id not in todo_ids]
    print(f"{len(mutants)} mutants, {len(todo)} to run", flush=True)

    def one(mutant: Mutant) -> Result:
        timeout = args.timeout or (120 if mutant.module.startswith("ref/") else 600)
        result = run_mutant(mutant, template, scratch, timeout)
        if result.status == "survived" and mutant.id in equivalent:
            result.status, result.detail = "equivalent", equivalent[mutant.id]
        return result

    with tempfile.TemporaryDirectory(prefix="tinygradlm-mutation-") as tmp:
        scratch = Path(tmp)
        template = prepare_template(scratch, sorted({m.module for m in todo}))
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for n, result in enumerate(pool.map(one, todo), 1):
                results.append(result)
                write_results(args.results, results)
                print(
                    f"[{n}/{len(todo)}] {result.status:10} {result.seconds:6.1f} s  "
                    f"{result.module}:{result.line} {result.original} -> {result.mutated}"
                    f"  {result.detail[:80]}",
                    flush=True,
                )
    print_summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
