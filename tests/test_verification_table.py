"""bench/verification.py, the source of docs/verification.md's measured table, still runs and
still finds every path in agreement: the same bounds the page quotes, at a small shape."""

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "verification.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_verification", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_path_agrees_on_every_parameter_of_a_small_gpt2(capsys):
    load_bench().main(["--layers", "1", "--width", "72", "--heads", "3", "--samples", "2"])
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| parameter"))
    worst = next(line for line in lines if line.startswith("| **worst**"))
    labels = [c.strip() for c in header.strip("|").split("|")][2:]
    values = [float(v) for v in re.findall(r"\*\*([0-9.e+-]+)\*\*", worst)]
    assert len(values) == len(labels) >= 7  # FD, witness, Numba and three float32 paths at least
    bounds = {"finite differences": 1e-8, "witness": 1e-13, "PyTorch": 1e-13, "Numba": 1e-13}
    for label, value in zip(labels, values, strict=True):
        assert value < bounds.get(label, 1e-5), f"{label}: worst error {value:.1e}"
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 16  # every parameter tensor of a one-block GPT-2


def test_every_path_agrees_on_every_layer(capsys):
    args = ["--layers", "1", "--width", "24", "--heads", "3", "--seq", "5", "--samples", "2"]
    load_bench().main(args)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| layer"))
    labels = [c.strip() for c in header.strip("|").split("|")][2:]
    rows = [line for line in lines if re.match(r"\| [a-z]+ \| `", line)]
    assert {row.split("|")[1].strip() for row in rows} == {
        "encoder", "layernorm", "linear", "attention", "gelu", "residual", "crossentropy"
    }  # fmt: skip
    bounds = {"finite differences": 1e-8, "witness": 1e-13, "PyTorch": 1e-13, "Numba": 1e-13}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][2:]
        for label, cell in zip(labels, cells, strict=True):
            if cell:  # finite differences have no forward row
                assert float(cell) < bounds.get(label, 1e-5), f"{row}: {label}"
