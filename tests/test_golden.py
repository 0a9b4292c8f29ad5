"""Golden data: deterministic bytes, an index that describes the files, tolerances that a second
implementation passes and planted bugs fail, and the C example's workflow as documented."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygradlm import backend, ref
from tinygradlm.cli import main
from tinygradlm.golden import read_index, write_golden
from tinygradlm.golden.layers import ARGUMENT_NAMES
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "c_kernel"


def numpy_reader():
    """The example's NumPy-only safetensors reader (what a user without tinygradlm runs)."""
    spec = importlib.util.spec_from_file_location("check_layernorm", EXAMPLE / "check_layernorm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_safetensors


try:
    from safetensors.numpy import load_file as read_tensors
except ImportError:  # the project's own reader, NumPy only
    read_tensors = numpy_reader()


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    write_golden(out)
    return out


def within(yours, name, entry, tensors):
    diff = float(np.max(np.abs(np.asarray(yours, np.float64) - tensors[name]), initial=0.0))
    return diff <= entry["outputs"][name]["tolerance"]


def test_the_same_bytes_every_time(golden, tmp_path):
    assert main(["golden", "--out", str(tmp_path / "again")]) == 0
    names = sorted(p.name for p in golden.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in names:
        assert (golden / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_the_index_describes_every_file(golden):
    index = read_index(golden)
    listed = {entry["file"] for entry in index["files"]}
    assert listed == {p.name for p in golden.glob("*.safetensors")}
    layers = {entry["layer"] for entry in index["files"]}
    assert set(ARGUMENT_NAMES) | {"train_step"} == layers
    for entry in index["files"]:
        tensors = read_tensors(golden / entry["file"])
        described = {**entry["inputs"], **entry.get("cotangent", {}), **entry["outputs"]}
        assert set(described) == set(tensors), entry["file"]
        for name, spec in described.items():
            assert list(tensors[name].shape) == spec["shape"], (entry["file"], name)
            assert tensors[name].dtype.name == spec["dtype"], (entry["file"], name)
        for name, spec in entry["outputs"].items():
            assert spec["tolerance"] >= 3 * spec["reference_error"], (entry["file"], name)


def test_the_numpy_only_reader_reads_what_safetensors_reads(golden):
    safetensors = pytest.importorskip("safetensors.numpy")
    file = golden / "attention_B1_T65_NH2_HS5_float32.safetensors"
    ours, theirs = numpy_reader()(file), safetensors.load_file(file)
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def run_layer(layers, entry, tensors):
    """A layer module's (ref's or the kernels') forward and backward on a golden file."""
    layer = entry["layer"]
    args = [tensors.get(name, entry["arguments"].get(name)) for name in ARGUMENT_NAMES[layer]]
    if layer == "linear" and args[2] is None:
        args = args[:2]
    out, cache = getattr(layers, f"{layer}_forward")(*args)
    dout = tensors["dout"].reshape(()) if layer == "crossentropy" else tensors["dout"]
    grads = getattr(layers, f"{layer}_backward")(dout, cache)
    return dict(zip(entry["outputs"], (out, *grads), strict=True))


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_every_layer_file_is_passed_by_the_reference_and_the_kernels(golden, kernels):
    for entry in read_index(golden)["files"]:
        if entry["layer"] == "train_step":
            continue
        tensors = read_tensors(golden / entry["file"])
        yours = run_layer(backend.layers(kernels), entry, tensors)
        for name in entry["outputs"]:
            assert within(yours[name], name, entry, tensors), (entry["file"], name)


def gelu_short_constant(x):
    return 0.5 * x * (1.0 + np.tanh(0.7978 * (x + ref.GELU_CUBIC * x**3))), (x,)


def test_planted_bugs_fail_the_golden_tolerances(golden):
    index = read_index(golden)
    checked = 0
    for entry in index["files"]:
        tensors = read_tensors(golden / entry["file"])
        if entry["layer"] == "gelu" and entry["dims"]["C"] > 1 and np.abs(tensors["x"]).max() < 5:
            # sqrt(2/π) to four digits: a 1e-5 relative error, caught in float32 too (on inputs
            # of magnitude 1: the floor follows the largest |out|, 30 on the file of scale 10)
            out, _ = gelu_short_constant(tensors["x"])
            assert not within(out, "out", entry, tensors), entry["file"]
            checked += 1
        if entry["layer"] == "layernorm" and entry["dtype"] == "float64":
            # eps left out: a relative change of eps/(2·var), below float32's resolution on the
            # files whose rows have a variance of 1e6, but far above float64's
            out, _ = ref.layernorm_forward(tensors["x"], tensors["weight"], tensors["bias"], 0.0)
            assert not within(out, "out", entry, tensors), entry["file"]
            checked += 1
    assert checked == 6  # the two GELU files of magnitude 1, the four float64 layer-norm ones


def training_step(entry, tensors, decay_mask=True):
    dtype = np.dtype(entry["dtype"])
    model = GPT(GPTConfig(**entry["config"]), dtype=dtype)
    model.load_state_dict({k[len("param.") :]: v for k, v in tensors.items() if "param." in k})
    loss, grads = model.forward_backward(tensors["idx"], tensors["targets"])
    yours = {"loss": loss, "logits": model.logits(tensors["idx"])}
    yours.update({f"grad.{k}": g.copy() for k, g in grads.items()})
    a = entry["arguments"]
    ranges = model.decay_ranges() if decay_mask else None
    AdamW(
        model.flat_params,
        model.flat_grads,
        lr=a["lr"],
        betas=tuple(a["betas"]),
        eps=a["eps"],
        weight_decay=a["weight_decay"],
        decay_ranges=ranges,
    ).step()
    yours.update({f"updated.{k}": p for k, p in model.state_dict().items()})
    return yours


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_training_step_is_reproduced_by_the_model(golden, kernels, dtype):
    file = f"train_step_{dtype}.safetensors"
    entry = next(e for e in read_index(golden)["files"] if e["file"] == file)
    tensors = read_tensors(golden / entry["file"])
    with backend.use_kernels(kernels):
        yours = training_step(entry, tensors)
        assert all(within(yours[name], name, entry, tensors) for name in entry["outputs"])
        # weight decay on every parameter, biases and layer norms too: nanoGPT's rule broken
        wrong = training_step(entry, tensors, decay_mask=False)
    failed = [name for name in entry["outputs"] if not within(wrong[name], name, entry, tensors)]
    assert failed and all(name.startswith("updated.") for name in failed)
    assert "updated.h.0.ln_1.weight" in failed


def documented_commands():
    """The shell block of docs/kernel_checking.md's C workflow, as a list of commands."""
    text = (ROOT / "docs" / "kernel_checking.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("plant_bug", [False, True])
def test_the_c_example_runs_as_documented(tmp_path, plant_bug):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = []
    for command in documented_commands():
        command = re.sub(r"^tinygradlm ", f"{sys.executable} -m tinygradlm ", command)
        command = re.sub(r"^python ", f"{sys.executable} ", command)
        if plant_bug and command.startswith("cc "):
            command = command.replace("cc ", "cc -DPLANT_BUG ", 1)
        script.append(command)
    env_path = f"PYTHONPATH={ROOT}"
    run = subprocess.run(
        ["bash", "-ec", f"export {env_path}\n" + "\n".join(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    if plant_bug:
        assert run.returncode == 1 and "0 passed, 4 failed" in run.stdout, run.stdout + run.stderr
    else:
        assert run.returncode == 0 and "4 passed, 0 failed" in run.stdout, run.stdout + run.stderr
