"""Text side: the word-level tokenizer trained on the captions and the small trainable encoder, or a frozen
pretrained T5 / CLIP encoder and its tokenizer from a local directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

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
        self.dim = dim
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Parameter(torch.zeros(1, max_len, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * 4, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(self.tokens(ids) + self.positions[:, : ids.shape[1]]))


class PromptTokenizer:
    """Prompts -> (B, max_len) ids for the text encoder: the word-level tokenizer trained here, or the
    tokenizer of a pretrained encoder. The empty prompt is the classifier-free-guidance null prompt."""

    def __init__(self, tok: Tokenizer | PreTrainedTokenizerBase, max_len: int):
        self.tok, self.max_len = tok, max_len
        self.pretrained = not isinstance(tok, Tokenizer)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self.pretrained:
            out = self.tok(
                texts, padding="max_length", truncation=True, max_length=self.max_len, return_tensors="pt"
            )
            return out.input_ids
        return encode(self.tok, texts, self.max_len)

    def save(self, model_dir: Path) -> None:
        if self.pretrained:
            self.tok.save_pretrained(model_dir / "tokenizer")
        else:
            self.tok.save(str(model_dir / "tokenizer.json"))

    @classmethod
    def load(cls, model_dir: str | Path, max_len: int) -> PromptTokenizer:
        model_dir = Path(model_dir)
        if (model_dir / "tokenizer.json").exists():
            return cls(load_tokenizer(model_dir / "tokenizer.json"), max_len)
        return cls(_auto_tokenizer(model_dir / "tokenizer"), max_len)


def _auto_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _encoder_class(path: str | Path) -> type[nn.Module]:
    """The encoder-only class for a local T5 / CLIP checkpoint, from its config.json."""
    import transformers

    model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    classes = {
        "t5": "T5EncoderModel",
        "umt5": "UMT5EncoderModel",
        "mt5": "MT5EncoderModel",
        "clip": "CLIPTextModel",
        "clip_text_model": "CLIPTextModel",
    }
    if model_type not in classes:
        raise ValueError(
            f"train.text_encoder_path {path}: model_type {model_type!r} is not supported; "
            f"use a T5 or CLIP checkpoint ({sorted(classes)})"
        )
    return getattr(transformers, classes[model_type])


class PretrainedTextEncoder(nn.Module):
    """A frozen Hugging Face T5 / CLIP text encoder: ids (B, L) -> last hidden states (B, L, hidden).
    Like CogVideoX, padded positions are kept (no attention mask): the model learns to read them."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.encoder = _encoder_class(path).from_pretrained(str(path), local_files_only=True)
        self.requires_grad_(False).eval()
        self.dim = self.encoder.config.hidden_size

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        return super().train(False)  # frozen: dropout stays off

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=ids).last_hidden_state

    @staticmethod
    def tokenizer(path: str | Path, max_len: int) -> PromptTokenizer:
        return PromptTokenizer(_auto_tokenizer(path), max_len)
