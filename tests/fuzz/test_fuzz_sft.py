"""Fuzzing the JSON Lines readers: an SFT file (``read_sft`` and ``load_sft``) and prepare's
JSON / JSON Lines inputs (``read_documents``). Any mutation of a valid file gives records of
strings that encode to rows of the requested length, or a DataError, within the time and memory
bounds; and no file changes.
"""

import json
import tempfile
from pathlib import Path

from fuzz_support import mutated_bytes, mutated_json, read_within_bounds, snapshot
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data.documents import read_documents
from tinygradlm.data.sft import load_sft, read_sft
from tinygradlm.errors import DataError
from tinygradlm.tokenizer import ENDOFTEXT, Tokenizer

TOKENIZER = Tokenizer({bytes([i]): i for i in range(256)}, special_tokens={ENDOFTEXT: 256})
SEQ_LEN = 24
RECORDS = [
    {"prompt": "What is 2+2?", "response": "4"},
    {"prompt": "Say hi", "response": "hi there", "id": 7},
    {"prompt": "naïve café", "response": "Съешь 我们"},
]
SFT = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS).encode()
DOCUMENTS = "".join(json.dumps({"text": r["prompt"]}) + "\n" for r in RECORDS).encode()


@st.composite
def mutated_lines(draw, valid: bytes):
    """A JSON Lines file: byte mutations of the whole, or one line's record mutated as JSON."""
    if draw(st.booleans()):
        return draw(mutated_bytes(valid))
    lines = valid.split(b"\n")
    i = draw(st.integers(0, len(lines) - 2))
    lines[i] = draw(mutated_json(json.loads(lines[i])))
    return b"\n".join(lines)


@given(data=mutated_lines(SFT))
def test_a_mutated_sft_file_gives_string_records_and_full_rows_or_a_data_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_bytes(data)
        before = snapshot(Path(tmp))
        records = read_within_bounds(lambda: read_sft(path), DataError)
        if records is not None:
            assert all(isinstance(p, str) and isinstance(r, str) for p, r, _ in records)
            examples = read_within_bounds(lambda: load_sft(path, TOKENIZER, SEQ_LEN), DataError)
            if examples is not None:
                assert examples.seq_len == SEQ_LEN
        assert snapshot(Path(tmp)) == before


@given(data=mutated_lines(DOCUMENTS), suffix=st.sampled_from([".jsonl", ".json"]))
def test_mutated_json_inputs_give_text_documents_or_a_data_error(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        before = snapshot(Path(tmp))
        documents = read_within_bounds(lambda: list(read_documents([path])), DataError)
        if documents is not None:
            assert all(isinstance(d.text, str) for d in documents)
            assert all(d.text.encode("utf-8") is not None for d in documents)
        assert snapshot(Path(tmp)) == before
