"""Tokenizer trained on the dataset's captions, and the small trainable text encoder."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def train_tokenizer(texts: list[str]) -> Tokenizer:
    """Word-level vocabulary of the captions (ids 0-3 are PAD, UNK, BOS, EOS)."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=[PAD, UNK, BOS, EOS]))
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def encode(tok: Tokenizer, texts: list[str], max_len: int, bos_eos: bool = False) -> torch.Tensor:
    """(B, max_len) int64 token ids, right-padded with PAD and truncated to max_len."""
    out = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
    for i, enc in enumerate(tok.encode_batch(texts)):
        ids = [BOS_ID, *enc.ids, EOS_ID] if bos_eos else enc.ids
        ids = ids[:max_len]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def decode(tok: Tokenizer, ids: list[int]) -> str:
    return tok.decode([i for i in ids if i > EOS_ID])


class TextEncoder(nn.Module):
    """Token ids (B, L) -> contextual embeddings (B, L, dim). PAD is an ordinary learned token, so an
    all-PAD caption (the classifier-free-guidance null prompt) has a well-defined embedding."""

    def __init__(self, vocab_size: int, max_len: int, dim: int, layers: int, heads: int = 4):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Parameter(torch.zeros(1, max_len, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * 4, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(self.tokens(ids) + self.positions[:, : ids.shape[1]]))
