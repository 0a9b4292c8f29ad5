"""The package's dependencies point one way, and a test, not a review, keeps them so.

Every import of every module of ``tinygradlm`` is read with ``ast``: at module level, inside
functions and under ``if TYPE_CHECKING:`` alike, since each is a dependency a reader has to
follow. From them the module graph (a package's ``__init__`` is a module; relative imports
resolved) must have:

- no import cycle;
- no ``_private`` name imported from another module, and no private module (``ref/_checks.py``)
  imported from outside its own package;
- nothing in ``ref/`` but NumPy and the standard library: the hand-derived layers stand alone;
- no import that points up the layer table below.

And two imports must stay light: ``import tinygradlm.model`` on the NumPy kernels loads no Numba,
and ``import tinygradlm`` loads neither MPI nor matplotlib.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tinygradlm

PACKAGE_DIR = Path(tinygradlm.__file__).parent

# Each name is the first part of a module's name below ``tinygradlm`` (``data`` for
# ``tinygradlm.data.prepare``); an import may point to the same layer (the graph must stay
# acyclic) or a lower one, never a higher one.
LAYERS: dict[int, tuple[str, ...]] = {
    # leaves: no project imports except ref's own
    0: ("errors", "atomic", "parse", "memory", "schema", "signals", "machine", "ref"),
    # numerical engines: the Numba twins of ref, the backend switch, the autograd witness
    1: ("kernels", "backend", "autograd"),
    # building blocks that know nothing of the model
    2: ("testing", "params", "precision", "tokenizer", "data", "optim", "monitor", "dist"),
    # the model and what reads, writes and samples it
    3: ("model", "lora", "checkpoint", "generate"),
    # runs
    4: ("train", "golden", "sweep"),
    # entry points (and the package's own __init__, a façade over autograd)
    5: ("cli", "__main__", "demo", ""),
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


@dataclass(frozen=True)
class Import:
    importer: str  # the module whose source holds the import
    module: str  # the module imported, fully qualified
    name: str | None  # the name taken from it (``from module import name``), if not a module
    line: int


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (``tinygradlm.data`` for data/__init__)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def imports_of(module: str) -> list[Import]:
    """Every import in ``module``'s source, wherever it stands, resolved to full names."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if is_package(module) else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # from package import module
                    found.append(Import(module, submodule, None, node.lineno))
                else:
                    found.append(Import(module, source, alias.name, node.lineno))
    return found


ALL_IMPORTS = [imp for module in MODULES for imp in imports_of(module)]
PROJECT_IMPORTS = [imp for imp in ALL_IMPORTS if imp.module in MODULES]


def where(imp: Import) -> str:
    what = imp.module if imp.name is None else f"{imp.name} from {imp.module}"
    return f"{imp.importer} (line {imp.line}) imports {what}"


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else ""
    assert key in LAYER_OF, f"{module} is in no layer: add {key!r} to LAYERS in {__file__}"
    return LAYER_OF[key]


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# --------------------------------------------------------------------------------------------
# the graph
# --------------------------------------------------------------------------------------------


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path [a, b, …, a], or None (depth-first, iterative)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in sorted(edges):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(edges[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def test_no_import_cycles():
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in PROJECT_IMPORTS:
        if imp.module != imp.importer:
            edges[imp.importer].add(imp.module)
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_private_names_across_modules():
    bad = []
    for imp in PROJECT_IMPORTS:
        if imp.name is not None and is_private(imp.name):
            bad.append(where(imp))
        parts = imp.module.split(".")
        for depth, part in enumerate(parts):
            if is_private(part):
                owner = ".".join(parts[:depth])  # the package the private module belongs to
                inside = imp.importer == owner or imp.importer.startswith(owner + ".")
                if not inside:
                    bad.append(f"{where(imp)}, a private module of {owner}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_no_private_attributes_of_other_modules():
    """``from . import module`` then ``module._helper`` is a private import by another road."""
    bad = []
    for module in MODULES:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        aliases = {}  # local name -> project module it is bound to
        for imp, node in zip(imports_of(module), _import_aliases(tree), strict=True):
            if imp.name is None and imp.module in MODULES and node is not None:
                aliases[node] = imp.module
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and is_private(node.attr)
                and aliases[node.value.id] != module
            ):
                target = f"{aliases[node.value.id]}.{node.attr}"
                bad.append(f"{module} (line {node.lineno}) uses {target}")
    assert not bad, "private names of other modules used:\n" + "\n".join(bad)


def _import_aliases(tree: ast.AST) -> list[str | None]:
    """The local name each import binds to a module, in the order of :func:`imports_of`."""
    names: list[str | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.asname for alias in node.names]  # `import a.b` binds a, not a.b
        elif isinstance(node, ast.ImportFrom):
            names += [alias.asname or alias.name for alias in node.names]
    return names


def test_ref_imports_only_numpy_and_the_standard_library():
    bad = []
    for imp in ALL_IMPORTS:
        if not imp.importer.startswith("tinygradlm.ref"):
            continue
        top = imp.module.split(".")[0]
        inside_ref = imp.module == "tinygradlm.ref" or imp.module.startswith("tinygradlm.ref.")
        if not (inside_ref or top == "numpy" or top in sys.stdlib_module_names):
            bad.append(where(imp))
    assert not bad, "ref/ must import only NumPy and the standard library:\n" + "\n".join(bad)


def test_every_import_points_to_the_same_or_a_lower_layer():
    bad = []
    for imp in PROJECT_IMPORTS:
        if layer_of(imp.module) > layer_of(imp.importer):
            bad.append(
                f"{where(imp)}: layer {layer_of(imp.importer)} -> layer {layer_of(imp.module)}"
            )
    assert not bad, "imports pointing up the layers:\n" + "\n".join(bad)


# --------------------------------------------------------------------------------------------
# what an import loads
# --------------------------------------------------------------------------------------------


def loaded_by(statement: str, **env: str) -> set[str]:
    """The top-level names in sys.modules after ``statement`` in a fresh interpreter."""
    listing = "print(' '.join({name.split('.')[0] for name in sys.modules}))"
    code = f"{statement}\nimport sys\n{listing}"
    environment = {**os.environ, **env}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_model_on_the_numpy_kernels_loads_no_numba():
    loaded = loaded_by("import tinygradlm.model", TINYGRADLM_KERNELS="numpy")
    assert "numba" not in loaded, (
        "import tinygradlm.model with TINYGRADLM_KERNELS=numpy loaded numba"
    )


def test_import_tinygradlm_loads_no_mpi_and_no_matplotlib():
    loaded = loaded_by("import tinygradlm")
    assert not loaded & {"mpi4py", "matplotlib", "numba"}, sorted(loaded)
