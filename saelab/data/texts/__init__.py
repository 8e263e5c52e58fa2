"""Paths of the text data shipped with saelab (provenance and licences in this folder's README.md)."""

from pathlib import Path

TEXTS = Path(__file__).resolve().parent
WIKITEXT_2_VALID = TEXTS / "wikitext-2-valid.txt"
"""WikiText-2 validation split (CC BY-SA 3.0), 60 articles: the `wikitext-2` corpus."""
CLINC150 = TEXTS / "clinc150"
"""CLINC150 `{train,val,test}.jsonl` for 5 domains (CC BY 3.0): the default `saelab select bench` data."""
