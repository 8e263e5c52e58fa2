"""The paper's real criterion on a small budget: fine-tune the model on a selection, measure held-out loss.

MoNA judges a selection by the target task's loss after fine-tuning on it. On a CPU we fine-tune only the
top `train_layers` blocks and the final norm (embeddings, tied with the unembedding, stay frozen): the
frozen lower blocks then see fixed inputs, so their output (the residual entering the first trained block)
is computed once per text and training runs only the top of the network. Every selection gets the same
steps, batch size, learning rate and seed; the loss is next-token cross-entropy over the text's tokens
(BOS is context, never a target), averaged over the held-out tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from saelab.models import HookContext, Model
from saelab.models.transformer import block, unembed
from saelab.runtime.progress import progress_bar

__all__ = ["FinetuneResult", "Frozen", "freeze_inputs", "finetune_and_eval"]


class Frozen(NamedTuple):
    """Texts after the frozen blocks: residual entering the first trained block, tokens and mask."""

    resid: np.ndarray  # (n, seq, d_model) float32
    tokens: np.ndarray  # (n, seq) int32, right-padded, BOS first
    mask: np.ndarray  # (n, seq) int32


class FinetuneResult(NamedTuple):
    eval_loss_before: float  # held-out mean token cross-entropy of the untouched model
    eval_loss_after: float  # after fine-tuning on the selection
    train_loss_first: float  # mean of the first 5 step losses
    train_loss_last: float  # mean of the last 5 step losses
    steps: int
    train_tokens: int


def freeze_inputs(model: Model, texts: Sequence[str], first_trained: int, seq: int, batch: int = 32) -> Frozen:
    """Run blocks 0..first_trained-1 once over `texts` (truncated to `seq` tokens with BOS)."""
    ids = [e.ids[: seq - 1] for e in model.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    toks = np.zeros((len(ids), seq), np.int32)
    mask = np.zeros((len(ids), seq), np.int32)
    for i, x in enumerate(ids):
        toks[i, : len(x) + 1] = [model.bos_id, *x]
        mask[i, : len(x) + 1] = 1
    hook = f"blocks.{first_trained - 1}.hook_resid_post"
    out = np.zeros((len(ids), seq, model.cfg.d_model), np.float32)
    for s in range(0, len(ids), batch):
        _, cache = model.run_with_cache(toks[s : s + batch], [hook], stop_at_layer="auto", pad_mask=mask[s : s + batch])
        out[s : s + batch] = np.asarray(cache[hook])
    return Frozen(out, toks, mask)


def finetune_and_eval(
    model: Model,
    train: Frozen,
    held_out: Frozen,
    first_trained: int,
    steps: int,
    batch: int = 16,
    lr: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> FinetuneResult:
    """Adam on the blocks >= first_trained and the final norm for `steps` steps of `batch` texts."""
    trainable = (model.params.layers[first_trained:], model.params.ln_final)  # (blocks, final norm)
    frozen = model.params._replace(layers=(), ln_final=None)
    loss_fn = _loss_fn(model.cfg, first_trained)
    opt = optax.adam(lr)
    state = opt.init(trainable)

    @jax.jit
    def step(p, s, fixed, resid, toks, mask):  # frozen weights as an argument, not a folded constant
        loss, g = jax.value_and_grad(lambda q: loss_fn(q, fixed, resid, toks, mask)[0])(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    before = _eval(loss_fn, trainable, frozen, held_out)
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(len(train.tokens)) for _ in range(-(-steps * batch // len(train.tokens)) + 1)]
    )
    losses = []
    with progress_bar("step/s", progress) as bar:
        task = bar.add_task("fine-tune", total=steps, info="")
        for i in range(steps):
            rows = order[i * batch : (i + 1) * batch]
            trainable, state, loss = step(
                trainable, state, frozen, train.resid[rows], train.tokens[rows], train.mask[rows]
            )
            losses.append(float(loss))
            bar.update(task, advance=1, info=f"loss {losses[-1]:.3f}")
    after = _eval(loss_fn, trainable, frozen, held_out)
    return FinetuneResult(
        before, after, float(np.mean(losses[:5])), float(np.mean(losses[-5:])), steps, int(train.mask[:, 1:].sum())
    )


def _loss_fn(cfg, first_trained: int):

    def loss_fn(trainable, frozen, resid, toks, mask):
        """(mean next-token cross-entropy, (token-loss sum, token count)) of the top of the network."""
        positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
        x = resid
        layers, ln_final = trainable
        for i, lp in enumerate(layers):
            x = block(lp, cfg, first_trained + i, x, positions, mask, HookContext())
        logits = unembed(frozen._replace(ln_final=ln_final), cfg, x)  # (batch, seq, vocab)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], toks[:, 1:])  # (batch, seq - 1)
        w = mask[:, 1:].astype(jnp.float32)  # targets are the real tokens after BOS
        total, count = (ce * w).sum(), w.sum()
        return total / jnp.maximum(count, 1.0), (total, count)

    return loss_fn


def _eval(loss_fn, trainable, frozen, data: Frozen, batch: int = 64) -> float:
    fn = functools.partial(jax.jit(loss_fn), trainable, frozen)
    total = count = 0.0
    for s in range(0, len(data.tokens), batch):
        _, (t, c) = fn(data.resid[s : s + batch], data.tokens[s : s + batch], data.mask[s : s + batch])
        total, count = total + float(t), count + float(c)
    return total / count
