"""Selection-time input format: a record as the model sees a user turn of its chat template, and which of its
tokens are the record's own (the only positions pooled into its embedding).

SmolLM2-Instruct's BOS is `<|im_start|>`, so "BOS + utterance" puts the utterance where the chat template puts
a role name (`<|im_start|>user\\n`). `template = "chat"` wraps a record in the user turn of the model's ChatML
template, `<|im_start|>user\\n{text}<|im_end|>\\n` (the turn SmolLM2's own GGUF `tokenizer.chat_template` renders
for a user message; its default system turn is left out: it is the same for every record and would triple the
tokens per utterance). The pieces are tokenised apart, special tokens by id, so the content positions are
exact, and the content is tokenised exactly as `template = "none"` tokenises it. Positions are causal, so the
suffix never changes a content token's activation; it is kept so that the input is the turn as a whole.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from tokenizers import Tokenizer

from saelab.select.config import Template

CHAT_PREFIX = "<|im_start|>user\n"
CHAT_SUFFIX = "<|im_end|>\n"
_SPECIAL = re.compile(r"(<\|[a-z_]+\|>)")

__all__ = ["CHAT_PREFIX", "CHAT_SUFFIX", "Template", "Wrapped", "encode_pieces", "wrap_ids", "chat_document"]


class Wrapped(NamedTuple):
    """One record's token ids in its input format and the mask of its own (content) tokens."""

    ids: list[int]  # BOS (or the template's first token) first
    content: list[int]  # 1 where the token is the record's text, 0 for BOS and template tokens


def encode_pieces(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of a template string: `<|name|>` pieces by their id (an error if the tokenizer lacks one),
    the rest by the tokenizer."""
    ids: list[int] = []
    for piece in _SPECIAL.split(text):
        if not piece:
            continue
        if _SPECIAL.fullmatch(piece):
            tid = tokenizer.token_to_id(piece)
            if tid is None:
                raise ValueError(f"template 'chat' needs the token {piece} (a ChatML model such as SmolLM2-Instruct)")
            ids.append(tid)
        else:
            ids += tokenizer.encode(piece, add_special_tokens=False).ids
    return ids


def wrap_ids(
    tokenizer: Tokenizer, content: list[list[int]], bos: int, template: Template, max_tokens: int
) -> list[Wrapped]:
    """Each content id list in the input format, truncated so the whole fits `max_tokens` (the content is cut,
    never the template). `none`: BOS + content; `chat`: the user turn, with BOS first unless the turn starts
    with it (SmolLM2: BOS is `<|im_start|>`)."""
    if template == "none":
        pre, suf = [bos], []
    else:
        pre, suf = encode_pieces(tokenizer, CHAT_PREFIX), encode_pieces(tokenizer, CHAT_SUFFIX)
        pre = pre if pre[0] == bos else [bos, *pre]
    room = max_tokens - len(pre) - len(suf)
    if room < 1:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text inside the {template!r} template")
    out = []
    for c in content:
        c = c[:room]
        out.append(Wrapped([*pre, *c, *suf], [0] * len(pre) + [1] * len(c) + [0] * len(suf)))
    return out


def chat_document(text: str) -> str:
    """A text as a harvest document in the chat format: the user turn without its `<|im_end|>\\n`, which the
    packer's EOS (`<|im_end|>` for SmolLM2) closes, so packed turns read `...{text}<|im_end|><|im_start|>user\\n`."""
    return CHAT_PREFIX + text
