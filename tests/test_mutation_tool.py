"""bench/mutation.py, the mutation tester whose kill rates docs/verification.md quotes: its
mutants are real changes, its table of equivalent mutants names mutants that still exist, and a
planted bug in a reference backward is reported as killed."""

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def mutation():
    spec = importlib.util.spec_from_file_location("bench_mutation", BENCH / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mutants(mutation):
    return mutation.enumerate_mutants(mutation.select_modules(None), "backward")


def test_every_mutant_is_a_distinct_change_that_still_parses(mutation, mutants):
    assert len({m.id for m in mutants}) == len(mutants)
    originals = {}
    for m in mutants[::7]:  # a sample keeps this quick; ids cover every module
        if m.module not in originals:
            originals[m.module] = ast.unparse(ast.parse((mutation.PACKAGE / m.module).read_text()))
        source = mutation.mutated_source(m)
        ast.parse(source)
        assert source.strip() != originals[m.module].strip(), m.id
    assert {m.module.split("/")[0] for m in mutants} == {"ref", "kernels"}


def test_the_equivalent_mutants_table_names_mutants_that_exist(mutants):
    table = json.loads((BENCH / "mutation_equivalent.json").read_text())["equivalent"]
    missing = sorted(set(table) - {m.id for m in mutants})
    assert not missing, f"stale entries (the code moved): {missing}"
    assert all(reason.strip() for reason in table.values())


def test_a_sign_flip_in_the_gelu_backward_is_killed(mutation, mutants, tmp_path):
    flipped = [
        m
        for m in mutants
        if m.module == "ref/gelu.py"
        and m.operator == "operator"
        and "0.5 * (1.0 + tanh_u) +" in m.original
    ]
    assert flipped, "no operator mutant of GELU's local gradient"
    result = mutation.run_mutant(flipped[0], mutation.ROOT, tmp_path, timeout=300)
    assert result.status == "killed", result.detail
    assert "gelu" in result.detail  # a GELU test failed, not the copy of the tree
