"""tinygradlm.backend selects the implementation: the TINYGRADLM_KERNELS environment variable at
import, ``set_kernels`` and ``use_kernels`` at run time; an unknown name is an error that lists
the valid ones."""

import os
import subprocess
import sys

import pytest

from tinygradlm import backend, kernels, ref


@pytest.fixture(autouse=True)
def restore_the_active_kernels():
    before = backend.kernels_name()
    yield
    backend.set_kernels(before)


def test_layers_by_name_is_ref_or_kernels():
    assert backend.layers("numpy") is ref
    assert backend.layers("numba") is kernels
    assert backend.layers(" Numba ") is kernels  # names are trimmed and case-insensitive


def test_set_kernels_switches_the_active_module():
    backend.set_kernels("numpy")
    assert backend.kernels_name() == "numpy" and backend.layers() is ref
    backend.set_kernels("numba")
    assert backend.kernels_name() == "numba" and backend.layers() is kernels


def test_use_kernels_switches_for_a_block_and_restores_even_on_error():
    backend.set_kernels("numba")
    with backend.use_kernels("numpy") as layers:
        assert layers is ref and backend.layers() is ref
    assert backend.layers() is kernels
    with pytest.raises(RuntimeError), backend.use_kernels("numpy"):
        raise RuntimeError("inside the block")
    assert backend.layers() is kernels


@pytest.mark.parametrize("call", [backend.set_kernels, backend.layers])
def test_an_unknown_name_is_an_error_listing_the_choices(call):
    with pytest.raises(ValueError, match=r"unknown kernels 'cuda': choose one of numba, numpy"):
        call("cuda")


def _python(code: str, value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != backend.ENV_VAR}
    if value is not None:
        env[backend.ENV_VAR] = value
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "numba"), ("", "numba"), ("numpy", "numpy"), ("NUMBA", "numba")]
)
def test_the_environment_variable_chooses_at_import(value, expected):
    code = "from tinygradlm import backend as b; print(b.kernels_name(), b.layers().__name__)"
    result = _python(code, value)
    assert result.returncode == 0, result.stderr
    module = {"numpy": "tinygradlm.ref", "numba": "tinygradlm.kernels"}[expected]
    assert result.stdout.split() == [expected, module]


def test_an_unknown_environment_value_fails_at_import_with_a_clear_message():
    result = _python("import tinygradlm.backend", "fortran")
    assert result.returncode != 0
    assert "unknown kernels 'fortran': choose one of numba, numpy" in result.stderr
