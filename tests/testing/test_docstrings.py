"""The examples in tinygradlm.testing's docstrings run as written."""

import doctest
import importlib

import pytest

MODULES = ["", ".checks", ".numerical", ".report", ".strategies"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module("tinygradlm.testing" + name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
