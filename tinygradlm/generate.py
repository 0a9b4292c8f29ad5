"""Sampling from a GPT: a KV cache for incremental decoding, and temperature / top-k / top-p.

A forward pass over T positions costs O(T) matmul work per position (attention reads every
earlier key), so recomputing the whole sequence for each new token costs O(T²) per token. But
attention is causal: the keys and values of positions 0..t-1 do not depend on anything after
them, so once computed they never change. :class:`KVCache` keeps them, per layer, in arrays
(B, NH, maxT, HS) allocated once; :func:`prefill` runs the prompt through the network (the same
layer functions as training) and fills them; :func:`decode_step` runs one new position through
the network, appends its key and value, and lets its query attend to the cache
(:func:`attend_to_cache`). The tests hold the cached logits equal to ``GPT.logits`` of the whole
sequence, in float32 and float64, with both the NumPy and the Numba layers.

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
from pathlib import Path
from typing import Any

import numpy as np

from . import backend
from .model import GPT, GPTConfig
from .tokenizer import TOKENIZER_FILE

# --------------------------------------------------------------------------------------------
# the KV cache and the incremental forward pass
# --------------------------------------------------------------------------------------------


class KVCache:
    """Every layer's keys and values for the positions seen so far.

    ``keys[i]`` and ``values[i]`` are (B, NH, maxT, HS) for layer i, allocated once (maxT =
    ``block_size``); positions 0..length-1 are filled. Memory: 2·L·B·maxT·C numbers (GPT-2
    124M, B=1, float32: 75 MB).
    """

    def __init__(self, config: GPTConfig, batch_size: int, dtype: Any = np.float32) -> None:
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.config = config
        self.batch_size = batch_size
        self.dtype = np.dtype(dtype)
        self.keys = [np.zeros(shape, dtype=self.dtype) for _ in range(config.n_layer)]
        self.values = [np.zeros(shape, dtype=self.dtype) for _ in range(config.n_layer)]
        self.length = 0

    @property
    def capacity(self) -> int:
        """The most positions the cache holds: ``block_size``."""
        return self.config.block_size

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.keys, *self.values))

    def store(self, layer: int, qkv: np.ndarray) -> None:
        """Write the keys and values of qkv (B, T, 3C) at positions length..length+T-1."""
        B, T, C3 = qkv.shape
        C, NH = C3 // 3, self.config.n_head
        start = self.length
        for cache, part in ((self.keys[layer], 1), (self.values[layer], 2)):
            heads = qkv[..., part * C : (part + 1) * C].reshape(B, T, NH, C // NH)
            cache[:, :, start : start + T] = heads.transpose(0, 2, 1, 3)  # (B, NH, T, HS)


def attend_to_cache(q: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Attention of one new query per head to every cached position, itself included.

    Shapes: q (B, NH, 1, HS), keys and values (B, NH, t+1, HS) -> out (B, NH, 1, HS).

    att = softmax(q·kᵀ/sqrt(HS)) over positions 0..t, out = att·v. No mask: the cache holds
    only positions up to the query's own, exactly the row t of the causal attention in
    ``tinygradlm.ref.attention_forward``.
    """
    HS = q.shape[-1]
    scores = q @ keys.swapaxes(-1, -2)  # (B, NH, 1, t+1)
    scores *= 1.0 / math.sqrt(HS)  # a Python float: float32 stays float32
    scores -= scores.max(axis=-1, keepdims=True)  # softmax is shift-invariant; exp can't overflow
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores @ values  # (B, NH, 1, HS)


def _check_tokens(model: GPT, idx: Any, what: str) -> np.ndarray:
    a = np.asarray(idx)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integer token ids, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= model.config.vocab_size):
        bad = int(a.min()) if a.min() < 0 else int(a.max())
        raise ValueError(f"{what}: token id {bad} is outside [0, {model.config.vocab_size})")
    return a.astype(np.int64, copy=False)


def _forward(model: GPT, idx: np.ndarray, cache: KVCache) -> np.ndarray:
    """Positions cache.length..cache.length+T-1 of idx (B, T) through the network; their keys
    and values go into the cache. Returns the next-token logits (B, V) of the last position.

    The layer chain of ``GPT._fused_forward``; only the attention differs: the prompt (an empty
    cache) uses the causal ``attention_forward`` of training, one new token
    :func:`attend_to_cache`.
    """
    if getattr(model, "lora", None) is not None:
        raise ValueError(
            "the model has LoRA adapters attached, which this forward does not apply: wrap the "
            "call in `with tinygradlm.lora.merged(model):` (generate does this itself)"
        )
    L = backend.layers()
    cfg, p = model.config, model.params
    B, T = idx.shape
    start = cache.length
    NH, HS, C = cfg.n_head, cfg.head_size, cfg.n_embd
    eps = cfg.layer_norm_epsilon
    # positions start.. use rows start.. of the position table
    wpe = p["wpe.weight"][start : start + T]
    x, _ = L.encoder_forward(idx, p["wte.weight"], wpe)  # (B, T, C)
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        ln1, _ = L.layernorm_forward(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
        qkv, _ = L.linear_forward(ln1, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"])
        cache.store(i, qkv)  # (B, T, 3C) -> keys, values at positions start..start+T-1
        if start == 0:
            atty, _ = L.attention_forward(qkv, NH)  # (B, T, C)
        else:  # T == 1: the new query against the cache, which now includes its own key
            q = qkv[..., :C].reshape(B, 1, NH, HS).transpose(0, 2, 1, 3)  # (B, NH, 1, HS)
            end = start + 1
            y = attend_to_cache(q, cache.keys[i][:, :, :end], cache.values[i][:, :, :end])
            atty = y.transpose(0, 2, 1, 3).reshape(B, 1, C)  # heads side by side again
        attproj, _ = L.linear_forward(atty, p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"])
        x2, _ = L.residual_forward(x, attproj)  # (B, T, C)
        ln2, _ = L.layernorm_forward(x2, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
        fch, _ = L.linear_forward(ln2, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"])
        fcg, _ = L.gelu_forward(fch)  # (B, T, 4C)
        fcproj, _ = L.linear_forward(fcg, p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])
        x, _ = L.residual_forward(x2, fcproj)  # (B, T, C)
    cache.length = start + T
    # only the last position's logits are wanted: ln_f and the (tied) head on (B, 1, C)
    last = np.ascontiguousarray(x[:, -1:])
    lnf, _ = L.layernorm_forward(last, p["ln_f.weight"], p["ln_f.bias"], eps)
    logits, _ = L.linear_forward(lnf, p["wte.weight"].T)  # (B, 1, Vp)
    return logits[:, 0, : cfg.vocab_size]  # (B, V)


def prefill(model: GPT, idx: Any, cache: KVCache | None = None) -> tuple[np.ndarray, KVCache]:
    """Run the prompt idx (B, T), 1 ≤ T ≤ block_size, through the model and cache its keys and
    values. Returns the next-token logits of its last position (B, V) and the cache.

    ``cache`` (of batch size B and the model's config and dtype), when given, is emptied and
    reused rather than allocated again.
    """
    idx = _check_tokens(model, idx, "prefill: idx")
    if idx.ndim != 2 or not 1 <= idx.shape[1] <= model.config.block_size:
        raise ValueError(
            f"prefill: idx must have shape (B, T) with 1 <= T <= block_size "
            f"({model.config.block_size}), got {idx.shape}"
        )
    B = idx.shape[0]
    if cache is None:
        cache = KVCache(model.config, B, model.dtype)
    elif (cache.config, cache.batch_size, cache.dtype) != (model.config, B, model.dtype):
        raise ValueError(
            f"prefill: the cache is for batch size {cache.batch_size} and dtype {cache.dtype}, "
            f"the prompt has batch size {B} and the model dtype {model.dtype}"
        )
    cache.length = 0
    return _forward(model, idx, cache), cache


def decode_step(model: GPT, token: Any, cache: KVCache) -> np.ndarray:
    """Append one token per sequence, ``token`` (B,), at position ``cache.length`` and return
    its next-token logits (B, V): one position's work, whatever the length of the context.

    Raises ValueError when the cache is full (``block_size`` positions): the window must slide,
    which changes every position; re-``prefill`` the cropped context instead.
    """
    token = _check_tokens(model, token, "decode_step: token").reshape(-1)
    if token.shape[0] != cache.batch_size:
        raise ValueError(
            f"decode_step: {token.shape[0]} tokens for a cache of batch size {cache.batch_size}"
        )
    if cache.length == 0:
        raise ValueError("decode_step: the cache is empty; prefill the prompt first")
    if cache.length >= cache.capacity:
        raise ValueError(
            f"decode_step: the cache is full ({cache.capacity} positions = block_size); "
            f"prefill the last block_size tokens instead"
        )
    return _forward(model, token[:, None], cache)


class Context:
    """A growing token sequence (B, n) with its KV cache and its next-token ``logits`` (B, V).

    ``append(tokens)`` adds one token per sequence and updates ``logits``: by a
    :func:`decode_step` while the window has room, else by a :func:`prefill` of the last
    ``block_size`` tokens (the crop). ``window`` is the part of ``tokens`` the model sees, so
    ``logits`` always equals ``model.logits(window)[:, -1]``. A prompt longer than
    ``block_size`` is cropped to its last ``block_size`` tokens.
    """

    def __init__(self, model: GPT, prompt: Any) -> None:
        prompt = _check_tokens(model, prompt, "prompt")
        if prompt.ndim != 2 or prompt.shape[1] == 0:
            raise ValueError(f"prompt must have shape (B, T) with T >= 1, got {prompt.shape}")
        self.model = model
        self.tokens = prompt.copy()  # (B, n) everything so far, uncropped
        self.logits, self.cache = prefill(model, self.window)

    @property
    def window(self) -> np.ndarray:
        """The last ``block_size`` tokens (B, min(n, block_size)): what the model sees."""
        return self.tokens[:, -self.model.config.block_size :]

    def append(self, tokens: Any) -> None:
        """Add ``tokens`` (B,), one per sequence, and compute the new next-token logits."""
        tokens = _check_tokens(self.model, tokens, "tokens").reshape(-1)
        if tokens.shape[0] != self.tokens.shape[0]:
            raise ValueError(f"{tokens.shape[0]} tokens for {self.tokens.shape[0]} sequences")
        self.tokens = np.concatenate([self.tokens, tokens[:, None]], axis=1)
        if self.cache.length < self.cache.capacity:
            self.logits = decode_step(self.model, tokens, self.cache)
        else:  # the window slides: every position changes, so recompute it
            self.logits, self.cache = prefill(self.model, self.window, self.cache)


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
    prompt = _check_tokens(model, prompt_ids, "prompt_ids")
    single = prompt.ndim == 1
    if single:
        prompt = prompt[None, :]
    if stop_token is not None:
        _check_tokens(model, np.asarray([stop_token]), "stop_token")
    rng = np.random.default_rng(seed)

    B = prompt.shape[0]
    new = np.empty((B, max_new_tokens), dtype=np.int64)
    finished = np.zeros(B, dtype=bool)
    n = 0
    if max_new_tokens:
        from .lora import merged

        with merged(model):  # adapters folded into the weights for the KV-cache forward
            n = _sample_loop(
                model, prompt, new, finished, rng, temperature, top_k, top_p, stop_token
            )
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

    Loads the checkpoint directory (``tinygradlm.checkpoint.load_checkpoint``) into a GPT of its
    config and dtype, and the tokenizer from its ``tokenizer.txt`` (or ``tokenizer_path``).
    The prompt is encoded with special tokens allowed (``<|endoftext|>`` in it is the eot
    token); an empty prompt starts from the eot token alone, as a new document would. Then
    :func:`generate` with the given settings; with ``stop_at_eot`` generation ends at the eot
    token, which is not printed. A prompt longer than ``block_size`` tokens is cropped (the
    model sees the last ``block_size``), but returned whole.
    """
    from .checkpoint import load_checkpoint, restore
    from .tokenizer import Tokenizer  # only here: the rest of this module needs no tokenizer

    ckpt = load_checkpoint(ckpt_dir)
    if tokenizer_path is None:
        found = [p for p in ckpt.tokenizer_files if Path(p).name == TOKENIZER_FILE]
        if not found:
            names = ", ".join(Path(p).name for p in ckpt.tokenizer_files) or "none"
            raise FileNotFoundError(
                f"{ckpt.path}: no {TOKENIZER_FILE} among the checkpoint's tokenizer files "
                f"({names}); pass tokenizer_path"
            )
        tokenizer_path = found[0]
    tokenizer = Tokenizer.load(tokenizer_path)
    eot = tokenizer.eot_token

    dtype = next(iter(ckpt.model_state.values())).dtype
    model = GPT(ckpt.config, dtype=dtype)
    restore(model, None, ckpt)

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
