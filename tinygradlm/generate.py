"""Sampling from a GPT: temperature / top-k / top-p, and the sampling loop over a KV cache.

The model decodes incrementally itself (``GPT.prefill`` fills a ``KVCache`` with the prompt's
keys and values, ``GPT.decode_step`` runs one new position against it: the same forward as
training, see ``tinygradlm.model``). This module keeps what is about choosing tokens:
:class:`Context`, the growing sequence and its next-token logits; :func:`sampling_distribution`
and :func:`sample_next`; and :func:`generate`, the loop.

The position table has maxT = ``block_size`` rows. When the context is full, the next token
makes the window slide: the context becomes the last maxT tokens, every token's position
changes, and with it every cached key and value, so the cache is rebuilt by a prefill of the
cropped context (:class:`Context` does this). From then on each token costs a full forward
pass over maxT positions, as without a cache.

:func:`generate` samples with an explicit ``np.random.default_rng(seed)``: the same model,
prompt, settings and seed give the same tokens. :func:`sample_from_checkpoint` is what
``tinygradlm sample`` calls. The math is in docs/sampling.md.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .model import GPT

# --------------------------------------------------------------------------------------------
# the decoding state
# --------------------------------------------------------------------------------------------


def _token_ids(model: GPT, idx: Any, what: str) -> np.ndarray:
    """The model's check of token ids (any shape), as int64."""
    return model.check_token_ids(idx, what).astype(np.int64, copy=False)


class Context:
    """A growing token sequence (B, n) with its KV cache and its next-token ``logits`` (B, V).

    ``append(tokens)`` adds one token per sequence and updates ``logits``: by a
    ``GPT.decode_step`` while the window has room, else by a ``GPT.prefill`` of the last
    ``block_size`` tokens (the crop). ``window`` is the part of ``tokens`` the model sees, so
    ``logits`` always equals ``model.logits(window)[:, -1]``. A prompt longer than
    ``block_size`` is cropped to its last ``block_size`` tokens.
    """

    def __init__(self, model: GPT, prompt: Any) -> None:
        prompt = _token_ids(model, prompt, "prompt")
        if prompt.ndim != 2 or prompt.shape[1] == 0:
            raise ValueError(f"prompt must have shape (B, T) with T >= 1, got {prompt.shape}")
        self.model = model
        self.tokens = prompt.copy()  # (B, n) everything so far, uncropped
        self.logits, self.cache = model.prefill(self.window)

    @property
    def window(self) -> np.ndarray:
        """The last ``block_size`` tokens (B, min(n, block_size)): what the model sees."""
        return self.tokens[:, -self.model.config.block_size :]

    def append(self, tokens: Any) -> None:
        """Add ``tokens`` (B,), one per sequence, and compute the new next-token logits."""
        tokens = _token_ids(self.model, tokens, "tokens").reshape(-1)
        if tokens.shape[0] != self.tokens.shape[0]:
            raise ValueError(f"{tokens.shape[0]} tokens for {self.tokens.shape[0]} sequences")
        self.tokens = np.concatenate([self.tokens, tokens[:, None]], axis=1)
        if self.cache.length < self.cache.capacity:
            self.logits = self.model.decode_step(tokens, self.cache)
        else:  # the window slides: every position changes, so recompute it
            self.logits, self.cache = self.model.prefill(self.window, self.cache)


# --------------------------------------------------------------------------------------------
# choosing the next token
# --------------------------------------------------------------------------------------------


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if isinstance(temperature, bool) or not (
        isinstance(temperature, (int, float, np.number)) and 0 <= temperature < math.inf
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool)
        or not isinstance(top_p, (int, float, np.number))
        or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def sampling_distribution(
    logits: Any, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> np.ndarray:
    """The distribution the next token is drawn from, (..., V) float64, from logits (..., V).

    In order: probs = softmax(logits / temperature) (temperature > 0); top-k keeps the k largest
    probabilities (ties with the k-th all kept); top-p keeps the smallest set of the largest
    probabilities whose sum reaches top_p; what is kept is renormalized to sum to 1.
    """
    _check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        raise ValueError("temperature 0 is greedy decoding: there is no distribution to draw from")
    # float64 from here: the draw then depends on the logits, not on float32 rounding of exp
    z = np.asarray(logits, dtype=np.float64) / temperature  # (..., V)
    V = z.shape[-1]
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[..., V - top_k, None]  # the k-th largest
        z = np.where(z >= kth, z, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        order = np.argsort(-probs, axis=-1, kind="stable")  # (..., V) largest first
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of the larger ones
        # keep a token while the larger ones have not yet reached top_p; the first always stays
        keep_sorted = before < top_p
        keep = np.empty_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def sample_next(
    logits: Any,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> np.ndarray:
    """One token per row of logits (B, V) -> (B,) int64.

    temperature 0 takes the argmax (greedy; the lowest id on a tie; top_k and top_p change
    nothing). Otherwise one uniform number u per row from ``rng`` picks the first token whose
    cumulative probability exceeds u (inverse-CDF sampling over :func:`sampling_distribution`).
    """
    _check_sampling(temperature, top_k, top_p)
    logits = np.asarray(logits)
    if temperature == 0:
        return np.argmax(logits, axis=-1).astype(np.int64)
    probs = sampling_distribution(logits, temperature, top_k, top_p)  # (B, V)
    cdf = np.cumsum(probs, axis=-1)  # (B, V)
    u = rng.random((probs.shape[0], 1)) * cdf[:, -1:]  # (B, 1) in [0, total)
    tokens = (cdf <= u).sum(axis=-1)  # the first index with cdf > u
    # rounding can put u on the top of the cdf: fall back to the last token with probability
    last_kept = probs.shape[-1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=-1)
    return np.minimum(tokens, last_kept).astype(np.int64)


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def generate(
    model: GPT,
    prompt_ids: Any,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    stop_token: int | None = None,
) -> list[int] | np.ndarray:
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens and return the new ones.

    prompt_ids: a non-empty sequence of token ids (T,) -> ``list[int]``; or prompts of equal
    length (B, T) -> an ndarray (B, n), n ≤ max_new_tokens. A prompt longer than ``block_size``
    is cropped to its last ``block_size`` tokens, and so is the context whenever it outgrows
    the window (see the module docstring).

    temperature 0 is greedy decoding; otherwise each token is drawn from
    :func:`sampling_distribution` (temperature, then top_k, then top_p) with one
    ``np.random.default_rng(seed)``, so a seed gives the same tokens every time. Generation
    stops after ``stop_token`` is drawn; it is included. In a batch a finished row is padded
    with ``stop_token`` until every row has drawn it.

    Raises ValueError naming the argument for temperature < 0, top_k < 1, top_p outside
    (0, 1], max_new_tokens < 0, or token ids outside the vocabulary.
    """
    _check_sampling(temperature, top_k, top_p)
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, (int, np.integer))
        or max_new_tokens < 0
    ):
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    shape = np.shape(prompt_ids)
    if len(shape) not in (1, 2) or 0 in shape:
        raise ValueError(
            f"prompt_ids must be a non-empty sequence (T,) or prompts (B, T), got shape {shape}"
        )
    prompt = _token_ids(model, prompt_ids, "prompt_ids")
    single = prompt.ndim == 1
    if single:
        prompt = prompt[None, :]
    if stop_token is not None:
        _token_ids(model, np.asarray([stop_token]), "stop_token")
    rng = np.random.default_rng(seed)

    B = prompt.shape[0]
    new = np.empty((B, max_new_tokens), dtype=np.int64)
    finished = np.zeros(B, dtype=bool)
    n = 0
    if max_new_tokens:
        n = _sample_loop(model, prompt, new, finished, rng, temperature, top_k, top_p, stop_token)
    if single:
        return new[0, :n].tolist()
    return new[:, :n]


def _sample_loop(
    model: GPT,
    prompt: np.ndarray,
    new: np.ndarray,
    finished: np.ndarray,
    rng: np.random.Generator,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stop_token: int | None,
) -> int:
    """Fill ``new`` (B, max_new_tokens) token by token; returns how many columns were filled."""
    n = 0
    context = Context(model, prompt)
    while True:
        token = sample_next(context.logits, rng, temperature, top_k, top_p)  # (B,)
        if stop_token is not None:
            token[finished] = stop_token
            finished |= token == stop_token
        new[:, n] = token
        n += 1
        if n == new.shape[1] or finished.all():
            return n  # the last token's logits are never needed: no forward pass for it
        context.append(token)


def sample_from_checkpoint(
    ckpt_dir: str | os.PathLike[str],
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    *,
    top_p: float | None = None,
    stop_at_eot: bool = True,
    tokenizer_path: str | os.PathLike[str] | None = None,
) -> str:
    """The prompt and its continuation as text: what ``tinygradlm sample`` prints.

    Loads the checkpoint directory into a GPT of its config and dtype, LoRA adapters attached
    when it has them (``tinygradlm.checkpoint.load_model``), and its tokenizer
    (``tinygradlm.tokenizer.checkpoint_tokenizer``: tokenizer.txt, tokenizer.json or vocab.json
    + merges.txt), or the one at ``tokenizer_path`` (any of those formats).
    The prompt is encoded with special tokens allowed (``<|endoftext|>`` in it is the eot
    token); an empty prompt starts from the eot token alone, as a new document would. Then
    :func:`generate` with the given settings; with ``stop_at_eot`` generation ends at the eot
    token, which is not printed. A prompt longer than ``block_size`` tokens is cropped (the
    model sees the last ``block_size``), but returned whole.
    """
    from .checkpoint import load_checkpoint, model_from_checkpoint

    # only here: the rest of this module needs no tokenizer
    from .tokenizer import checkpoint_tokenizer, load_tokenizer

    ckpt = load_checkpoint(ckpt_dir)
    if tokenizer_path is None:
        tokenizer, tokenizer_path = checkpoint_tokenizer(ckpt)
    else:
        tokenizer = load_tokenizer(tokenizer_path)
    eot = tokenizer.eot_token

    model = model_from_checkpoint(ckpt)

    ids = tokenizer.encode(prompt, allowed_special="all")
    if not ids:
        if eot is None:
            raise ValueError(
                f"the prompt is empty and the tokenizer {tokenizer_path} has no "
                f"<|endoftext|> token to start from"
            )
        start = [eot]
    else:
        start = ids
    new = generate(
        model,
        start,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop_token=eot if stop_at_eot else None,
    )
    assert isinstance(new, list)
    if stop_at_eot and new and new[-1] == eot:
        new = new[:-1]
    return tokenizer.decode(ids + new)
