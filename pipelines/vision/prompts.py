"""Prompt text for models: words hashed into a fixed vocabulary, and their averaged embedding.

A prompt (a task text, e.g. "reach and grasp the red cube, Advantage: positive") is split into
lowercase words, each word hashed (BLAKE2b, stable across processes and machines, unlike
Python's `hash`) into a vocabulary of `vocab` ids, and the words' embeddings averaged by an
`EmbeddingBag`. Several tasks share one model, and a text never seen still encodes. The policy
(its FiLM conditioning) and the RECAP value model (the task of each frame) both use it.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch
from torch import nn

_WORD = re.compile(r"[a-z0-9]+")


def prompt_words(text: str) -> list[str]:
    """The lowercase words of a prompt (punctuation dropped)."""
    return _WORD.findall(text.lower())


def word_id(word: str, vocab: int) -> int:
    """A word's id in 1 .. vocab - 1 (0 is padding), stable across processes."""
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % (vocab - 1)


def tokenize(texts: list[str], vocab: int) -> np.ndarray:
    """Texts -> len(texts) x L int64 word ids, 0-padded (L = the longest text, at least 1)."""
    ids = [[word_id(w, vocab) for w in prompt_words(t)] for t in texts]
    out = np.zeros((len(texts), max([1, *map(len, ids)])), dtype=np.int64)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
    return out


class PromptEncoder(nn.Module):
    """Word ids (B x L, 0 = padding) -> B x dim: the mean of the words' embeddings."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.vocab = vocab
        self.bag = nn.EmbeddingBag(vocab, dim, mode="mean", padding_idx=0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.bag(tokens)
