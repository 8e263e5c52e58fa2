"""`Model`: a loaded JAX transformer with hook points, in the spirit of TransformerLens's HookedTransformer.

The math lives in pure functions (`transformer.forward`); this thin class holds config, params and
tokenizer and keeps jitted entry points. Inside a user's own `jax.jit`/`vmap`, call `forward` or the
methods directly: they are traceable.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tokenizers import Tokenizer

from saelab.models.config import ModelConfig
from saelab.models.hooks import HookContext, HookFn, hook_layer, hook_names, validate_hook_names
from saelab.models.loading import open_checkpoint
from saelab.models.tl_processing import Processing, process_weights
from saelab.models.transformer import FAMILIES, forward
from saelab.runtime.dtypes import float_dtype


class Model:
    """A transformer with hook points. Build with `Model.load(name)`."""

    def __init__(
        self,
        cfg: ModelConfig,
        params: dict,
        tokenizer: Tokenizer | None = None,
        special: Mapping[str, int] | None = None,
        source: str = "",
        weights_hash: str = "",
    ) -> None:
        self.cfg = cfg
        self.params = params
        self.tokenizer = tokenizer
        self.special = dict(special or {})
        self.source = source
        self.weights_hash = weights_hash

    @classmethod
    def load(cls, name: str, dtype: str = "float32", process: Processing = "none") -> Model:
        """Load by alias (`smollm2-135m`), GGUF path, Hugging Face directory or hub id. `process=
        "transformer_lens"` applies TransformerLens's default weight processing (`models/tl_processing.py`),
        which SAEs trained through TransformerLens expect; the weights hash then names it."""
        compute = float_dtype(dtype, "model dtype")
        ck = open_checkpoint(name)
        if process == "none":
            params = FAMILIES[ck.cfg.family].params_from_hf(ck.get, ck.cfg, compute)
            return cls(ck.cfg, params, ck.tokenizer, ck.special, ck.source, ck.weights_hash)
        params = process_weights(FAMILIES[ck.cfg.family].params_from_hf(ck.get, ck.cfg, jnp.float32), ck.cfg, process)
        params = jax.tree.map(lambda a: a.astype(compute), params)
        return cls(ck.cfg, params, ck.tokenizer, ck.special, ck.source, f"{ck.weights_hash}+{process}")

    @property
    def bos_id(self) -> int | None:
        return self.special.get("bos")

    @property
    def eos_id(self) -> int | None:
        return self.special.get("eos")

    @property
    def dtype(self) -> jnp.dtype:
        return self.params["embed"].dtype

    def hook_names(self) -> list[str]:
        return hook_names(self.cfg)

    def run_with_cache(
        self, tokens: Any, names: Iterable[str], stop_at_layer: int | None = None, pad_mask: Any = None
    ) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        """(logits or None when stopped early, {name: activation}). `stop_at_layer=n` runs blocks 0..n-1;
        `stop_at_layer="auto"` stops right after the deepest requested block."""
        names = tuple(sorted(set(names)))
        validate_hook_names(names, self.cfg)
        last = max((hook_layer(n, self.cfg.n_layers) for n in names), default=None)  # ln_final.*: n_layers
        if stop_at_layer == "auto":  # the final norm's points need the whole forward
            stop_at_layer = None if last is None or last >= self.cfg.n_layers else last + 1
        if stop_at_layer is not None and last is not None and last >= stop_at_layer:
            raise ValueError(f"stop_at_layer={stop_at_layer} would skip a requested hook among {list(names)}")
        out = _cached_forward(self.cfg, names, stop_at_layer)(self.params, jnp.asarray(tokens), pad_mask)
        return out

    def run_with_hooks(self, tokens: Any, hooks: Mapping[str, HookFn], pad_mask: Any = None) -> jax.Array:
        """Logits with `hooks` (name -> pure function of the activation) applied during the forward.

        Traceable: call it inside jit/vmap to sweep interventions. Outside a trace it is jitted per set
        of hook functions (reuse the same function objects to avoid recompiling)."""
        validate_hook_names(hooks, self.cfg)
        items = tuple(sorted(hooks.items()))
        return _hooked_forward(self.cfg, items)(self.params, jnp.asarray(tokens), pad_mask)

    def to_tokens(self, texts: str | Sequence[str], prepend_bos: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise and left-pad a batch: (tokens (batch, seq) int32, pad_mask (batch, seq) int32)."""
        if self.tokenizer is None:
            raise ValueError(f"model {self.source} has no tokenizer; pass token ids instead")
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        if prepend_bos and self.bos_id is not None:
            ids = [[self.bos_id, *x] for x in ids]
        n = max(len(x) for x in ids)
        toks = np.zeros((len(ids), n), np.int32)
        mask = np.zeros((len(ids), n), np.int32)
        for i, x in enumerate(ids):
            toks[i, n - len(x) :] = x
            mask[i, n - len(x) :] = 1
        return toks, mask

    def generate(
        self,
        prompt: str | Sequence[str],
        max_new_tokens: int = 32,
        prepend_bos: bool = True,
        *,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        stop: Sequence[int] | None = None,
        hooks: Mapping[str, HookFn] | None = None,
    ) -> str | list[str]:
        """Continuation of one prompt (a string) or of several (a list, batched with left padding), with a KV
        cache. Greedy by default; `temperature` > 0 samples (with `top_k` / `top_p`, reproducible per `seed`).
        Stops at `stop` token ids (default: the model's EOS). `hooks` apply at every step."""
        from saelab.models.generate import generate_text

        if hooks:
            validate_hook_names(hooks, self.cfg)
        return generate_text(
            self,
            prompt,
            max_new_tokens,
            prepend_bos=prepend_bos,
            stop=stop,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            hooks=hooks,
        )

    def info(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "source": self.source,
            "family": c.family,
            "n_layers": c.n_layers,
            "d_model": c.d_model,
            "n_heads": c.n_heads,
            "n_kv_heads": c.n_kv_heads,
            "d_head": c.d_head,
            "d_mlp": c.d_mlp,
            "vocab_size": c.vocab_size,
            "n_params": c.n_params,
            "dtype": str(self.dtype),
            "weights_hash": self.weights_hash,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }


@functools.lru_cache(maxsize=64)
def _cached_forward(cfg: ModelConfig, names: tuple[str, ...], stop_at_layer: int | None):
    def run(params, tokens, pad_mask):
        return tuple(forward(params, cfg, tokens, pad_mask, HookContext(cache=names), stop_at_layer))

    return jax.jit(run)


@functools.lru_cache(maxsize=64)
def _hooked_forward(cfg: ModelConfig, hooks: tuple[tuple[str, HookFn], ...]):
    def run(params, tokens, pad_mask):
        return forward(params, cfg, tokens, pad_mask, HookContext(hooks=dict(hooks))).logits

    return jax.jit(run)
