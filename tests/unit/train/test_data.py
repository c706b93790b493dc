from __future__ import annotations

import numpy as np
import torch

from reelforge.model.text import PromptTokenizer, train_tokenizer
from reelforge.train.data import TokenizedCaptions


def test_captions_held_as_one_buffer_read_back_and_tokenize_as_the_list_does():
    """Any text (non-ASCII, empty, repeated) comes back as it went in, and a batch's ids are those of
    tokenizing its captions directly."""
    texts = ["a red circle moves left", "", "un café à Zürich — 日本", "a red circle moves left", "x"]
    tokenizer = PromptTokenizer(train_tokenizer(texts), 8)
    captions = TokenizedCaptions(texts, tokenizer)
    assert len(captions) == len(texts)
    assert [captions.text(i) for i in range(len(texts))] == texts
    idx = np.array([4, 2, 0])
    assert torch.equal(captions[idx], tokenizer([texts[i] for i in idx]))
    assert captions.buffer.dtype == np.uint8 and captions.ends.dtype == np.int64
