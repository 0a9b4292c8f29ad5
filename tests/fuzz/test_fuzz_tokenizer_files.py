"""Fuzzing the three tokenizer formats: our tokenizer.txt, a .tiktoken rank file, and GPT-2's
encoder.json + vocab.bpe. Any mutation of a valid file (bytes, lines, numbers, the JSON header
or encoder.json at any path) gives a tokenizer that encodes and decodes text losslessly, with a
vocabulary no larger than the file can describe, or a DataError, within the time and memory
bounds; and no file changes.
"""

import json
import tempfile
from pathlib import Path

from fuzz_support import mutated_bytes, mutated_json, read_within_bounds, snapshot
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.errors import DataError
from tinygradlm.tokenizer import ENDOFTEXT, Tokenizer
from tinygradlm.tokenizer.files import RESERVED_IDS
from tinygradlm.tokenizer.pretokenize import PROBE

TRAINED = Tokenizer.train(
    ["the cat sat on the mat; the dog sat on the log. " * 4, "ab ab abc abcd " * 5],
    vocab_size=300,
    special_tokens=(ENDOFTEXT,),
)


def _files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        TRAINED.save(root / "tokenizer.txt")
        TRAINED.save_tiktoken(root / "r.tiktoken")
        TRAINED.save_gpt2(root / "encoder.json", root / "vocab.bpe")
        return {p.name: p.read_bytes() for p in root.iterdir()}


VALID = _files()
READERS = {
    "tokenizer.txt": lambda root: Tokenizer.load(root / "tokenizer.txt"),
    "r.tiktoken": lambda root: Tokenizer.from_tiktoken(root / "r.tiktoken", "gpt2"),
    "encoder.json": lambda root: Tokenizer.from_gpt2(root / "encoder.json", root / "vocab.bpe"),
    "vocab.bpe": lambda root: Tokenizer.from_gpt2(root / "encoder.json", root / "vocab.bpe"),
}


@st.composite
def mutated_file(draw):
    name = draw(st.sampled_from(sorted(READERS)))
    valid = VALID[name]
    if name == "encoder.json" and draw(st.booleans()):
        return name, draw(mutated_json(json.loads(valid)))
    if name == "tokenizer.txt" and draw(st.booleans()):  # the JSON header line
        header, rest = valid.split(b"\n", 1)
        return name, draw(mutated_json(json.loads(header))) + b"\n" + rest
    return name, draw(mutated_bytes(valid))


@given(case=mutated_file())
def test_a_mutated_tokenizer_file_loads_to_a_lossless_tokenizer_or_a_data_error(case):
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for file, valid in VALID.items():
            (root / file).write_bytes(valid)
        (root / name).write_bytes(data)
        before = snapshot(root)
        tokenizer = read_within_bounds(lambda: READERS[name](root), DataError)
        if tokenizer is not None:
            entries = len(tokenizer.ranks) + len(tokenizer.special_tokens)
            assert tokenizer.vocab_size <= entries + RESERVED_IDS  # ids are dense, near enough
            ids = tokenizer.encode_ordinary(PROBE)
            assert tokenizer.decode(ids) == PROBE
        assert snapshot(root) == before
