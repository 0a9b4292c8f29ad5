"""Data-parallel training under ``mpiexec`` (tinygradlm.dist): P ranks against one process."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinygradlm.checkpoint import latest_checkpoint, load_checkpoint
from tinygradlm.data.shards import write_shards

MPIEXEC = Path(sys.executable).with_name("mpiexec")
FAULTS = Path(__file__).with_name("fault_launcher.py")  # tinygradlm with a fault injected
pytestmark = pytest.mark.skipif(
    not MPIEXEC.exists(), reason="no mpiexec beside this Python (the dev extra brings mpich)"
)
V = 32
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "data"
    rng = np.random.default_rng(0)
    tokens = (np.cumsum(rng.integers(1, 3, size=4000)) % V).astype(np.uint16)
    write_shards([tokens[:3600]], path, split="train", vocab_size=V, shard_tokens=1000)
    write_shards([tokens[3600:]], path, split="val", vocab_size=V)
    return path


def overrides(data: Path, out: Path, **extra) -> list[str]:
    values = {
        "data_dir": f'"{data}"',
        "out_dir": f'"{out}"',
        "model.preset": '"tiny"',
        "model.block_size": 16,
        "model.n_layer": 2,
        "model.n_head": 2,
        "model.n_embd": 32,
        "batch_size": 12,
        "seq_len": 16,
        "max_steps": 5,
        "lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_steps": 2,
        "eval_interval": 5,
        "sample_interval": 0,
        "checkpoint_interval": 1000,  # and the last step
        "log_interval": 1000,
        "kernels": '"numpy"',
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def launch(P: int, args: list[str], timeout: float = 60, env: dict | None = None):
    command = [str(MPIEXEC), "-n", str(P), sys.executable, *args]
    full_env = {**os.environ, **ONE_THREAD, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env)


def train(P: int, data: Path, out: Path, *, env: dict | None = None, **extra):
    result = launch(P, ["-m", "tinygradlm", "train", *overrides(data, out, **extra)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    if P > 1:  # really P ranks of one job, not P separate runs
        assert f"data parallel: {P} ranks" in result.stdout, result.stdout
    ckpt = load_checkpoint(latest_checkpoint(out))
    return ckpt


def flat(ckpt) -> np.ndarray:
    return np.concatenate([np.ravel(v) for _, v in sorted(ckpt.model_state.items())])


def train_records(out: Path) -> list[dict]:
    import json

    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "train"]


def test_p_ranks_match_one_process(data, tmp_path):
    one = flat(train(1, data, tmp_path / "p1"))
    for P, extra in ((2, {"bucket_size_mb": 0.01}), (3, {})):
        many = flat(train(P, data, tmp_path / f"p{P}", **extra))
        np.testing.assert_allclose(
            many, one, rtol=1e-4, atol=1e-4
        )  # Adam magnifies near-zero gradients
    # the communication metrics: under MPI only, the ring's bytes and the compute imbalance
    assert all("comm_bytes" not in r for r in train_records(tmp_path / "p1"))
    records = train_records(tmp_path / "p2")
    assert len(records) == 5
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "p2"))
    grad_bytes = 4 * sum(np.size(v) for v in ckpt.model_state.values())
    for r in records:
        assert r["comm_bytes"] == int(2 * (2 - 1) / 2 * grad_bytes)
        assert r["imbalance"] >= 1.0
        assert r["time"]["comm"] > 0


def test_deterministic_reduce_is_bitwise_identical_for_any_p(data, tmp_path):
    runs = [
        flat(
            train(
                P,
                data,
                tmp_path / f"p{P}",
                deterministic_reduce="true",
                grad_accum_steps=2,
                batch_size=4,
                max_steps=3,
            )
        )
        for P in (1, 2, 4)
    ]
    for other in runs[1:]:
        assert np.array_equal(other, runs[0])


def test_resume_on_another_number_of_ranks(data, tmp_path):
    straight = flat(train(2, data, tmp_path / "straight", max_steps=6))
    train(2, data, tmp_path / "split", max_steps=3, checkpoint_interval=3)
    resumed = flat(train(1, data, tmp_path / "split", max_steps=6, checkpoint_interval=3))
    np.testing.assert_allclose(
        resumed, straight, rtol=1e-4, atol=1e-4
    )  # Adam magnifies near-zero gradients


def test_zero1_matches_plain_data_parallel_and_resumes_under_another_p(data, tmp_path):
    runs = ("plain", "zero")
    plain = flat(train(2, data, tmp_path / "plain", max_steps=6))
    zero = flat(train(2, data, tmp_path / "zero", max_steps=6, zero_stage=1))
    np.testing.assert_allclose(zero, plain, rtol=1e-4, atol=1e-4)
    # the same traffic as an allreduce's: reduce-scatter and allgather, 2(P − 1)/P · S
    assert [r["comm_bytes"] for r in train_records(tmp_path / "zero")] == [
        r["comm_bytes"] for r in train_records(tmp_path / "plain")
    ]
    moments = [load_checkpoint(latest_checkpoint(tmp_path / r)).optimizer_state for r in runs]
    for key in ("m", "v"):  # gathered to rank 0 whole: the same checkpoint as without ZeRO
        assert np.count_nonzero(moments[1][key]) > 0.9 * moments[1][key].size
        np.testing.assert_allclose(moments[1][key], moments[0][key], rtol=1e-3, atol=1e-6)
    # a ZeRO-1 checkpoint has the usual format: it resumes plain on 1 rank, and ZeRO-1 on 3
    for P, extra in ((1, {}), (3, {"zero_stage": 1})):
        out = tmp_path / f"split{P}"
        train(2, data, out, max_steps=3, checkpoint_interval=3, zero_stage=1)
        resumed = flat(train(P, data, out, max_steps=6, checkpoint_interval=3, **extra))
        np.testing.assert_allclose(resumed, plain, rtol=1e-4, atol=1e-4)


def test_a_layout_mismatch_stops_the_job_with_a_message():
    code = (
        "from tinygradlm import dist\n"
        "d = dist.init()\n"
        "d.check_same('same', 'parameter layout and config')\n"
        "d.check_same('x' if d.rank == 2 else 'y', 'parameter layout and config')\n"
    )
    code = f"from tinygradlm import dist; dist.run_or_abort(dist.init(), exec, {code!r})"
    result = launch(3, ["-c", code], timeout=30)
    assert result.returncode != 0
    assert "disagree on the parameter layout and config: rank(s) 2 differ" in result.stderr


def test_an_error_on_one_rank_ends_the_job(data, tmp_path):
    started = time.monotonic()
    args = [str(FAULTS), "fail", "1", "2", "--", "train"]
    result = launch(2, [*args, *overrides(data, tmp_path / "run", max_steps=50)], timeout=30)
    assert result.returncode != 0
    assert "[rank 1]" in result.stderr, result.stderr + result.stdout
    assert "injected failure at step 2 on rank 1" in result.stderr
    assert time.monotonic() - started < 30


def test_the_watchdog_reports_a_stalled_collective_and_ends_the_job(data, tmp_path):
    started = time.monotonic()
    # 10 s: far longer than any start-up gap between the ranks (a cold Numba cache included), far
    # shorter than the 60 s stall
    extra = {"max_steps": 50, "collective_timeout_s": 10}
    args = [str(FAULTS), "stall", "1", "2", "60", "--", "train"]
    result = launch(2, [*args, *overrides(data, tmp_path / "run", **extra)], timeout=50)
    assert result.returncode != 0
    assert (
        "[rank 0] collective allreduce_mean at step 2 has not completed after 10s" in result.stderr
    ), result.stderr + result.stdout
    assert time.monotonic() - started < 50


def finetune_task(root: Path) -> Path:
    """A tiny byte-level GPT saved as a model checkpoint, and prompt/response data whose
    responses differ in length (the ranks' slices hold different numbers of targets)."""
    import json

    from tinygradlm.checkpoint import save_model
    from tinygradlm.model import GPT, GPTConfig
    from tinygradlm.tokenizer import Tokenizer

    tok = Tokenizer({bytes([i]): i for i in range(256)}, special_tokens={"<|endoftext|>": 256})
    tok.save(root / "tokenizer.txt")
    model = GPT(GPTConfig(vocab_size=257, block_size=16, n_layer=2, n_head=2, n_embd=32), seed=0)
    save_model(root / "base", model, tokenizer_files=[root / "tokenizer.txt"])
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcde"), size=rng.integers(1, 6))) for _ in range(24)]
    (root / "task").mkdir()
    (root / "task" / "train.jsonl").write_text(
        "".join(json.dumps({"prompt": w + "=", "response": w[::-1]}) + "\n" for w in words)
    )
    return root


def finetune(P: int, root: Path, out: Path, *extra: str):
    args = ["-m", "tinygradlm", "finetune", "--from", str(root / "base")]
    args += ["--data", str(root / "task"), f"out_dir='{out}'", "batch_size=8"]
    args += ["seq_len=12", "max_steps=4", "warmup_steps=1", "checkpoint_interval=4"]
    args += ["log_interval=1000", "eval_interval=0", "sample_interval=0", "lr=1e-2", *extra]
    result = launch(P, args)
    assert result.returncode == 0, result.stdout + result.stderr
    return load_checkpoint(latest_checkpoint(out))


def test_finetune_on_p_ranks_matches_one_process(tmp_path):
    root = finetune_task(tmp_path)
    finals = [flat(finetune(P, root, tmp_path / f"ft{P}")) for P in (1, 2)]
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("what", [["lora_rank=4"], ['freeze=["wte", "h.0"]', "weight_decay=0.1"]])
def test_finetune_under_zero1_matches_plain_data_parallel(tmp_path, what):
    root = finetune_task(tmp_path)
    plain = finetune(2, root, tmp_path / "plain", *what)
    zero = finetune(2, root, tmp_path / "zero", *what, "zero_stage=1")
    base = load_checkpoint(root / "base")
    if plain.adapter_state is not None:  # LoRA: the adapters train, the base stays as it was
        assert zero.adapter_state.keys() == plain.adapter_state.keys()
        for name, value in plain.adapter_state.items():
            np.testing.assert_allclose(zero.adapter_state[name], value, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flat(zero), flat(plain), rtol=1e-4, atol=1e-4)  # the base
    for key in ("m", "v"):  # gathered to rank 0 whole: the same checkpoint as without ZeRO
        np.testing.assert_allclose(
            zero.optimizer_state[key], plain.optimizer_state[key], rtol=1e-3, atol=1e-6
        )
    if plain.adapter_state is None:  # frozen parameters: bit-for-bit unchanged under ZeRO too
        for name, value in base.model_state.items():
            if name.startswith(("wte.", "h.0.")):
                np.testing.assert_array_equal(zero.model_state[name], value, err_msg=name)


def test_a_mixture_samples_the_same_on_any_number_of_ranks_and_across_a_resume(tmp_path):
    """With deterministic_reduce a step is bitwise the same for any P, so equal parameters mean
    equal global batches: the mixture's sampling does not depend on P, nor on a resume under
    another P."""
    root = tmp_path / "mixed"
    rng = np.random.default_rng(1)
    for name, step, n in (("prose", 1, 3000), ("code", 3, 1500)):
        tokens = (np.cumsum(rng.integers(step, step + 2, size=n)) % V).astype(np.uint16)
        write_shards(
            [tokens[: n - 300]], root / name, split="train", vocab_size=V, shard_tokens=900
        )
        write_shards([tokens[n - 300 :]], root / name, split="val", vocab_size=V)
    mix = {"data.mix": "{prose = 0.7, code = 0.3}", "deterministic_reduce": "true", "max_steps": 6}
    one = flat(train(1, root, tmp_path / "p1", **mix))
    two = flat(train(2, root, tmp_path / "p2", **mix))
    assert np.array_equal(one, two)
    train(2, root, tmp_path / "split", checkpoint_interval=3, **{**mix, "max_steps": 3})
    resumed = train(1, root, tmp_path / "split", checkpoint_interval=3, **mix)
    assert np.array_equal(flat(resumed), one)
    seen = resumed.trainer_state["loader"]["mixture"]
    assert {name: s["seen"] for name, s in seen.items()} == {"prose": 50, "code": 22}  # 72 at 7:3
