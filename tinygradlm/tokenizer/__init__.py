"""Byte-level BPE with regex pre-tokenization: GPT-2's and tiktoken's tokenizer, trainable.

A tokenizer is three things (docs/tokenizer.md):

- **ranks**, ``dict[bytes, int]``: every token's byte string and its id. The 256 single bytes are
  always tokens, so any text can be encoded; a multi-byte token is the concatenation of two
  tokens of lower rank, its *merge*. A token's id is its rank, its merge priority.
- **a split pattern** (``PATTERNS``): a regex that cuts text into chunks (words with their leading
  space, numbers, punctuation runs, whitespace) before BPE; tokens never cross a chunk boundary.
- **special tokens** such as ``<|endoftext|>``: strings given ids of their own, recognised in
  text only when the caller allows it (``encode``'s ``allowed_special``).

Training (``Tokenizer.train``), as GPT-2's, minbpe's and HF ``tokenizers``' BPE trainers do:

1. Split the corpus into chunks with the pattern and count each distinct chunk once
   (``Counter[str]``); the corpus is never read again.
2. Write each distinct chunk as a list of byte ids, and count every adjacent pair of ids over
   all chunks, each chunk weighted by its count. Remember also which chunks hold each pair.
3. Repeat until the vocabulary is full: take the most frequent pair (a, b), give the bytes of a
   followed by those of b the next id c, and in every chunk that holds the pair replace each
   (a, b) by c, left to right.

**Tie-break.** Among pairs of equal count the pair with the smallest ids wins, compared as the
tuple (a, b): first the smaller left id, then the smaller right id (HF ``tokenizers`` does the
same). Single bytes have ids 0..255 by byte value and merged tokens ids in creation order, so the
rule depends only on the corpus, never on dict or set order: training is deterministic.

**The incremental update** is what makes step 3 cheap. Merging (a, b) changes the pairs of only
the chunks that hold (a, b), so for each of those the pairs of its old token list are subtracted
from the counts and the pairs of its new list added, and the pair → chunks index follows. The
most frequent pair comes from a heap of (-count, a, b) entries that is never searched or rebuilt:
entries go stale when a count drops, and a popped entry whose count no longer matches is pushed
back with its current count ("lazy invalidation"). Only pairs that contain the new token can grow
in a merge, and those are pushed when the merge is done, so the heap's top is always right.

Encoding is tiktoken's algorithm, so our ids equal tiktoken's for the same ranks and pattern:
split the text into chunks; a chunk whose bytes are a token is that token; otherwise start from
its single bytes and repeatedly merge the adjacent pair whose concatenation has the lowest rank
(the leftmost such pair on ties) until no adjacent pair is a token. A cache maps recent chunks to
their ids, so a common word is merged once.

**Speed.** Both run in Numba where they can, each kernel beside the Python it must equal (the
tests compare them on arbitrary text): with the named patterns, the split is written out by hand
(``fast.py``, the character classes read off the ``regex`` package), and encoding a long text
(or any text once ``load_kernel`` has run) is one pass over its UTF-8 bytes that splits, looks
each chunk up whole and merges by pairs of ids; training counts the chunks with that split and
runs the merge loop over flat arrays (``fast_train.py``). Custom patterns use ``regex`` for the
split, and the Python path above stays the readable reference.

**Text that is not Unicode.** A Python ``str`` can hold lone surrogates (U+D800..U+DFFF), which
no UTF-8 byte string represents. ``encode`` raises a ``DataError`` naming the position, rather
than replacing them with U+FFFD as tiktoken does, so that ``decode(encode(text)) == text`` holds
for every string ``encode`` accepts. ``decode`` replaces invalid UTF-8 (a token sequence cut in
the middle of a character, say) with U+FFFD; ``decode_bytes`` returns the raw bytes.

Files (docs/tokenizer.md): ``save``/``load`` write our human-readable text format;
``save_tiktoken``/``from_tiktoken`` tiktoken's ``.tiktoken`` rank files; ``save_gpt2``/
``from_gpt2`` GPT-2's ``encoder.json`` + ``vocab.bpe``; ``save_hf``/``from_hf`` Hugging Face's
``tokenizer.json`` (+ ``tokenizer_config.json``) and ``vocab.json`` + ``merges.txt``.
``checkpoint_tokenizer`` finds and reads a checkpoint's tokenizer in whichever of them it has.

The package, one job per module:

    pretokenize.py   ENDOFTEXT, the split PATTERNS, pre-tokenization
    training.py      learning the merges (steps 1-3 above); learn_ranks_reference in Python
    fast_train.py    the chunk count and merge loop of training in Numba
    fast.py          encoding with the named patterns in Numba (split, lookup, merge loop)
    merge.py         encoding's merge loop (bpe_merge, and bpe_merge_long for long chunks)
    bpe.py           Tokenizer: vocabulary, train, encode, decode, save/load
    files.py         our format, tiktoken's and GPT-2's, TOKENIZER_FILE
    hf.py            Hugging Face's files (tokenizer.json; vocab.json + merges.txt)
    load.py          one tokenizer from whichever file is present: checkpoint_tokenizer
"""

from .bpe import Tokenizer
from .files import TOKENIZER_FILE
from .hf import HF_CONFIG_FILE, HF_TOKENIZER_FILE
from .load import TOKENIZER_FILE_ORDER, checkpoint_tokenizer, find_tokenizer_file, load_tokenizer
from .merge import bpe_merge, bpe_merge_long
from .pretokenize import ENDOFTEXT, PATTERNS, resolve_pattern

__all__ = [
    "ENDOFTEXT",
    "HF_CONFIG_FILE",
    "HF_TOKENIZER_FILE",
    "PATTERNS",
    "TOKENIZER_FILE",
    "TOKENIZER_FILE_ORDER",
    "Tokenizer",
    "bpe_merge",
    "bpe_merge_long",
    "checkpoint_tokenizer",
    "find_tokenizer_file",
    "load_tokenizer",
    "resolve_pattern",
]
