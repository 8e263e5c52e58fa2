"""delphi's prompt formats as saelab writes them, and the reply parsers (delphi's own code is not a peer
installed here; the formats are checked line by line instead)."""

from __future__ import annotations

import pytest

from saelab.evals.autointerp.judge import render_chatml, render_plain
from saelab.evals.autointerp.prompts import (
    classifier_chat,
    explainer_chat,
    highlight,
    parse_explanation,
    parse_labels,
)


def test_classifier_chat_layout() -> None:
    chat = classifier_chat("detection", "Dates in text.", ["on 3 May", "a cat"])
    assert [m["role"] for m in chat] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert (
        chat[-1]["content"]
        == "Latent explanation: Dates in text.\n\nText examples:\n\nExample 0: on 3 May\nExample 1: a cat\n"
    )
    for user, reply in zip(chat[1:-1:2], chat[2:-1:2], strict=True):
        n = user["content"].count("\nExample ")
        assert user["content"].startswith("Latent explanation: ") and "Text examples:\n\nExample 0: " in user["content"]
        assert parse_labels(reply["content"], n) is not None  # every few-shot reply is a list of n 0/1
    assert "<<" not in "".join(m["content"] for m in chat[1:])
    fuzz = classifier_chat("fuzzing", "Dates in text.", ["on<< 3>> May"])
    assert "marked like <<this>>" in fuzz[0]["content"] and fuzz[1]["content"].count("<<") >= 3
    with pytest.raises(ValueError, match="unknown classifier"):
        classifier_chat("intruder", "x", ["a"])


def test_explainer_chat_layout() -> None:
    chat = explainer_chat(["a<< b>> c", "d<< b>>"])
    assert chat[-1] == {"role": "user", "content": "Example 1: a<< b>> c\nExample 2: d<< b>>"}
    assert all(m["content"].startswith("[EXPLANATION]: ") for m in chat[2:-1:2])
    assert "[EXPLANATION]:" in chat[0]["content"].splitlines()[-1]


def test_highlight_marks_runs() -> None:
    assert highlight(["a", " b", " c", " d", " e"], [False, True, True, False, True]) == "a<< b c>> d<< e>>"
    assert highlight(["x"], [False]) == "x"


@pytest.mark.parametrize(
    ("reply", "n", "want"),
    [
        ("[1,0,1]", 3, [1, 0, 1]),
        ("Sure! [1, 0, 1] is my answer [0,0,0]", 3, [1, 0, 1]),
        ("[True, False]", 2, [1, 0]),
        ("[1,0]", 3, None),
        ("[1,2,0]", 3, None),
        ("no list", 1, None),
        ("['1','0']", 2, [1, 0]),
    ],
)
def test_parse_labels(reply: str, n: int, want) -> None:
    assert parse_labels(reply, n) == want


def test_parse_explanation() -> None:
    assert parse_explanation("Step 1...\n[EXPLANATION]: Units after numbers.\nmore") == ("Units after numbers.", True)
    assert parse_explanation("\n  Words about cats\nand more") == ("Words about cats", False)
    assert parse_explanation("") == ("", False)


def test_chat_rendering() -> None:
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert (
        render_chatml(chat) == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_plain(chat) == "S\n\nUser: U\n\nAssistant:"


def test_chatml_is_smollm2s_own_template() -> None:
    """render_chatml equals SmolLM2-Instruct's GGUF `tokenizer.chat_template` rendered by jinja2 (the oracle,
    exact string match) for a system turn, few-shot turns and the generation prompt."""
    import gguf
    import jinja2

    from saelab.models.loading import resolve

    field = gguf.GGUFReader(resolve("smollm2-135m")).fields["tokenizer.chat_template"]
    template = jinja2.Template(bytes(field.parts[field.data[0]]).decode())
    chat = classifier_chat("detection", "Dates.", ["on 3 May"])
    assert template.render(messages=chat, add_generation_prompt=True) == render_chatml(chat)
