"""``prepare``'s encode-and-write stage with 1, 2, … worker processes: the time, and where the
CPU time goes (the parent's, the workers').

The stage is what ``prepare`` runs for each split once the tokenizer is trained: every document
encoded (``encode_documents``), counted (``CorpusStats``) and written to shards after its
end-of-text token. The documents are the held-out Shakespeare plays of bench/tokenizer.py,
repeated up to each size, and the tokenizer is trained on the other plays (vocab 8,192, GPT-4's
split). Workers are used at every size here (``PARALLEL_MIN_CHARS`` set to 0), to show where they
start to pay. The shards are checked byte-identical across worker counts. Every configuration
runs once per round, the rounds alternate their order, and the table gives medians: the time,
its ratio to one process's in the same round, and the CPU seconds of the parent and of the
workers (summed).

    python bench/prepare_encoding.py                      # 36 and 8 MB, 5 rounds
    python bench/prepare_encoding.py --mb 36,8,4,2 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tokenizer import load_corpus  # bench/tokenizer.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", default="36,8", help="corpus sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", default="", help="counts to compare (default 1 … cores)")
    args = parser.parse_args()

    from tinygradlm.data import encoding
    from tinygradlm.data.documents import Document
    from tinygradlm.tokenizer import ENDOFTEXT, Tokenizer

    train, held_out = load_corpus(5.0)
    tok = Tokenizer.train(train, 8192, pattern="gpt4", special_tokens=(ENDOFTEXT,))
    counts = [int(w) for w in args.workers.split(",") if w] or list(
        range(1, encoding.available_cores() + 1)
    )
    threshold = encoding.PARALLEL_MIN_CHARS
    encoding.PARALLEL_MIN_CHARS = 0
    print(
        f"prepare's encode-and-write stage; median of {args.rounds} rounds; "
        f"PARALLEL_MIN_CHARS is {threshold / 2**20:g} M characters (set to 0 here)\n"
    )
    print("| corpus | workers | seconds | time vs 1 | parent CPU s | workers' CPU s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for mb in [float(m) for m in args.mb.split(",")]:
        docs: list[Document] = []
        while sum(len(d.text) for d in docs) < mb * 1e6:
            docs += [Document(t, f"play{len(docs)}") for t in held_out]
        while sum(len(d.text) for d in docs) > mb * 1e6 + 2e5:
            docs.pop()

        results: dict[int, list[tuple[float, float, float]]] = {w: [] for w in counts}
        with tempfile.TemporaryDirectory() as tmp:
            outs = {w: Path(tmp) / str(w) for w in counts}
            for r in range(args.rounds):
                for w in counts if r % 2 == 0 else counts[::-1]:
                    results[w].append(_stage(tok, docs, w, outs[w]))
            shards = {w: [p.read_bytes() for p in sorted(outs[w].glob("*.bin"))] for w in counts}
            assert all(s == shards[counts[0]] for s in shards.values()), "the shards differ"
        chars = sum(len(d.text) for d in docs)
        for w in counts:
            wall, cpu, children = (statistics.median(x[i] for x in results[w]) for i in range(3))
            pairs = zip(results[w], results[counts[0]], strict=True)
            ratio = statistics.median(a[0] / b[0] for a, b in pairs)
            print(
                f"| {chars / 1e6:.1f} M chars | {w} | {wall:.3f} | {ratio:.2f} | {cpu:.3f} "
                f"| {children:.3f} |"
            )


def _stage(tok, docs, workers: int, out: Path) -> tuple[float, float, float]:
    """(seconds, the parent's CPU seconds, the workers' CPU seconds) of one encode-and-write."""
    from tinygradlm.data.corpus import CorpusStats
    from tinygradlm.data.prepare import _token_stream
    from tinygradlm.data.shards import write_shards

    stats = CorpusStats(tok, delimiter=tok.eot_token)
    start, cpu, children = time.perf_counter(), time.process_time(), _children()
    stream = _token_stream(tok, docs, stats, workers)
    write_shards(stream, out, split="train", vocab_size=tok.vocab_size, overwrite=True)
    stats.to_dict()
    return time.perf_counter() - start, time.process_time() - cpu, _children() - children


def _children() -> float:
    times = os.times()
    return times.children_user + times.children_system


if __name__ == "__main__":
    main()
