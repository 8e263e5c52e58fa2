"""A small byte-level BPE tokenizer trained in memory, so packing tests need no downloads."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL = ["<|endoftext|>", "<|im_start|>"]
_TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. Return the number of items in the container.
A sparse autoencoder reconstructs activations from a few active latents; each latent should mean one thing.
Tokenizers split text into pieces, and packing cuts the stream of pieces into windows of equal length.
def read(path): return open(path).read()  # 0123456789 + - * / = < > ( ) [ ] { } , . : ; ' "
"""


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    """ASCII-trained, so accented letters, CJK and emoji stay split into several byte tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TRAIN_TEXT] * 20, trainer)
    return tok
