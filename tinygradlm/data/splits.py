"""Splitting a source's documents into train and validation, and sampling the training text
that trains the tokenizer in the proportions of the sources' weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .documents import Document


def split_documents(
    docs: Sequence[Document], val_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """Train and validation documents: whole documents, in a seeded order, to the validation
    split until it holds ``val_fraction`` of the characters. With one document, its last lines
    (about ``val_fraction`` of it) become the validation document."""
    if val_fraction == 0 or not docs:
        return list(docs), []
    if len(docs) == 1:
        doc = docs[0]
        lines = doc.text.splitlines(keepends=True)
        if len(lines) < 2:
            return [doc], []
        cut = int(
            np.searchsorted(np.cumsum([len(x) for x in lines]), (1 - val_fraction) * len(doc.text))
        )
        cut = min(max(cut, 1), len(lines) - 1)
        return (
            [Document("".join(lines[:cut]), doc.source)],
            [Document("".join(lines[cut:]), doc.source + " (tail)")],
        )
    order = np.random.default_rng(seed).permutation(len(docs))
    target = val_fraction * sum(len(d.text) for d in docs)
    val_ids: set[int] = set()
    held = 0
    for i in order:
        if held >= target or len(val_ids) == len(docs) - 1:
            break
        val_ids.add(int(i))
        held += len(docs[i].text)
    train = [d for i, d in enumerate(docs) if i not in val_ids]
    val = [d for i, d in enumerate(docs) if i in val_ids]
    return train, val


def tokenizer_sample(
    train_sets: Sequence[Sequence[Document]],
    weights: Sequence[float],
    *,
    cap: int = 0,
    seed: int = 0,
) -> list[list[str]]:
    """The texts each source gives to tokenizer training, so that the sample follows the
    (normalised) ``weights``.

    Source i has C_i characters of training text. The sample has S = min_i C_i / w_i characters,
    the most for which no source is asked for more text than it has (at most ``cap`` when
    ``cap`` > 0), and source i gives a budget of B_i = w_i·S of them. A source whose budget is
    all its text gives every document as it is (so one source with no cap gives all of it);
    any other gives whole documents in a seeded order (``seed`` and its position) while they
    fit, then the start of the next one, cut at the last line break (or, in a single line, the
    last space) within the budget; it falls short of B_i by less than a line.
    """
    chars = [sum(len(d.text) for d in docs) for docs in train_sets]
    if len(chars) != len(weights) or any(c <= 0 for c in chars):
        raise ValueError("tokenizer_sample needs one non-empty training set per weight")
    total = min(c / w for c, w in zip(chars, weights, strict=True))
    if cap > 0:
        total = min(total, cap)
    samples = []
    for index, (docs, have, weight) in enumerate(zip(train_sets, chars, weights, strict=True)):
        budget = min(have, round(weight * total))
        if budget == have:
            samples.append([d.text for d in docs])
            continue
        texts: list[str] = []
        left = budget
        for i in np.random.default_rng([seed, index]).permutation(len(docs)):
            text = docs[i].text
            if len(text) > left:
                head = text[:left]
                cut = head.rfind("\n") + 1 or head.rfind(" ") + 1
                if cut:
                    texts.append(head[:cut])
                break
            texts.append(text)
            left -= len(text)
        samples.append(texts)
    return samples
