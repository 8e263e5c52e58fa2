"""The downstream fine-tune: frozen lower blocks computed once give the same loss as the full forward, and
training the top blocks on a few texts lowers the loss on those texts."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from saelab.select.finetune import finetune_and_eval, freeze_inputs

TEXTS = ["set a timer for five minutes", "play some music please", "what is the weather today"]


def test_frozen_split_matches_full_forward_and_training_helps(tiny_model):
    frozen = freeze_inputs(tiny_model, TEXTS, first_trained=1, seq=8)
    logits = tiny_model.run_with_hooks(jnp.asarray(frozen.tokens), {}, pad_mask=jnp.asarray(frozen.mask))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], jnp.asarray(frozen.tokens[:, 1:]))
    w = frozen.mask[:, 1:]
    full = float((np.asarray(ce) * w).sum() / w.sum())
    r = finetune_and_eval(tiny_model, frozen, frozen, first_trained=1, steps=30, batch=3, lr=1e-2, progress=False)
    np.testing.assert_allclose(r.eval_loss_before, full, rtol=1e-5)
    assert r.eval_loss_after < r.eval_loss_before - 0.5
    assert r.train_tokens == int(w.sum())
