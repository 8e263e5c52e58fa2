"""The `select-corpus` stage: texts from several corpora written as one JSONL of chat-format documents, so
that a harvest (`jsonl:FILE:text`) sees exactly the input format selection uses (`template = "chat"`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from saelab.data.corpus import open_corpus
from saelab.select.config import ChatCorpusConfig
from saelab.select.template import chat_document

__all__ = ["ChatCorpusConfig", "write_chat_corpus"]


def write_chat_corpus(cfg: ChatCorpusConfig) -> Path:
    """Write every source's documents (the first `cfg.limit` of each), wrapped, to `cfg.out`; returns it."""
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"{out} exists; pass overwrite = true or choose another out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    counts = {}
    with tmp.open("w") as f:
        for spec in cfg.sources:
            n = 0
            for doc in open_corpus(spec):
                if cfg.limit is not None and n >= cfg.limit:
                    break
                f.write(json.dumps({"text": chat_document(doc.text), "source": spec}) + "\n")
                n += 1
            counts[spec] = n
    os.replace(tmp, out)
    print(f"chat corpus: {sum(counts.values()):,} documents -> {out} ({counts})", flush=True)
    return out
