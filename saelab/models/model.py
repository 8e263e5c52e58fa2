"""`Model`: a loaded JAX transformer with hook points, in the spirit of TransformerLens's HookedTransformer.

The math lives in pure functions (`transformer.forward`); this thin class holds config, params and
tokenizer and keeps jitted entry points. Inside a user's own `jax.jit`/`vmap`, call `forward` or the
methods directly: they are traceable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tokenizers import Tokenizer

from saelab.models.compile_options import forward_options
from saelab.models.config import ModelConfig
from saelab.models.hook_args import FwdHooks, RunsWithHooks, hook_pairs, pick_names
from saelab.models.hook_fns import LiftedHooks, call_lifted, lift_hooks
from saelab.models.hooks import HookContext, HookFn, hook_layer, hook_names, stop_layer, validate_hook_names
from saelab.models.inputs import Tokens, pad_left, resolve
from saelab.models.loading import open_checkpoint
from saelab.models.registry import weights_from_hf
from saelab.models.tl_processing import Processing, process_weights
from saelab.models.transformer import forward
from saelab.models.weights import ModelWeights
from saelab.runtime.dtypes import float_dtype


class Model(RunsWithHooks):
    """A transformer with hook points. Build with `Model.load(name)`."""

    def __init__(
        self,
        cfg: ModelConfig,
        params: ModelWeights,
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
            params = weights_from_hf(ck.get, ck.cfg, compute)
            return cls(ck.cfg, params, ck.tokenizer, ck.special, ck.source, ck.weights_hash)
        params = process_weights(weights_from_hf(ck.get, ck.cfg, jnp.float32), ck.cfg, process)
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
        return self.params.embed.dtype

    @property
    def pad_ids(self) -> tuple[int, ...]:
        """Token ids that pad a batch: 0 (what `to_tokens` writes) and the tokenizer's padding token."""
        return tuple(sorted({0, *([self.special["padding"]] if "padding" in self.special else [])}))

    def hook_names(self) -> list[str]:
        return hook_names(self.cfg)

    def __call__(self, input: Any, pad_mask: Any = None, *, prepend_bos: bool = True) -> jax.Array:
        """Logits (batch, seq, vocab) of text, texts, a `to_tokens` result or token ids (TransformerLens's
        `model(tokens)`); padding is masked."""
        return self.run_with_hooks(input, None, pad_mask, prepend_bos=prepend_bos)

    def run_with_cache(
        self,
        input: Any,
        names: str | Iterable[str] | None = None,
        stop_at_layer: int | str | None = None,
        pad_mask: Any = None,
        *,
        names_filter: str | Iterable[str] | Callable[[str], bool] | None = None,
        prepend_bos: bool = True,
    ) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        """(logits or None when stopped early, {name: activation}). `input` is text, a list of texts, the
        `to_tokens` result or token ids (see `saelab.models.inputs`); padding is masked. `names` (or
        TransformerLens's `names_filter`: a name, names or a predicate) picks the hooks; neither caches every
        hook. `stop_at_layer=n` runs blocks 0..n-1; `"auto"` stops right after the deepest requested block."""
        toks = resolve(self, input, pad_mask, prepend_bos)
        names = tuple(sorted(set(pick_names(self.hook_names(), names, names_filter))))
        validate_hook_names(names, self.cfg)
        last = max((hook_layer(n, self.cfg.n_layers) for n in names), default=None)  # ln_final.*: n_layers
        if stop_at_layer == "auto":
            stop_at_layer = stop_layer(names, self.cfg.n_layers)
        if stop_at_layer is not None and last is not None and last >= stop_at_layer:
            raise ValueError(f"stop_at_layer={stop_at_layer} would skip a requested hook among {list(names)}")
        return _cached_forward(self.cfg, names, stop_at_layer)(self.params, jnp.asarray(toks.tokens), toks.pad_mask)

    def _logits_with_hooks(
        self, input: Any, pad_mask: Any, hooks: Mapping[str, Callable] | None, fwd_hooks: FwdHooks, prepend_bos: bool
    ) -> jax.Array:
        toks = resolve(self, input, pad_mask, prepend_bos)
        pairs = self._hook_pairs(hooks, fwd_hooks)
        lifted, data = lift_hooks(pairs)

        def run(lifted: LiftedHooks, data: tuple) -> jax.Array:
            return _hooked_forward(self.cfg, lifted)(self.params, jnp.asarray(toks.tokens), toks.pad_mask, data)

        return call_lifted(run, lifted, data)

    def to_tokens(self, texts: str | Sequence[str], prepend_bos: bool = True) -> Tokens:
        """Tokenise and left-pad a batch: `Tokens(tokens (batch, seq) int32, pad_mask (batch, seq) int32)`,
        which every model call takes as it is (it unpacks as the pair `tokens, pad_mask` too)."""
        if self.tokenizer is None:
            raise ValueError(f"model {self.source} has no tokenizer; pass token ids instead")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("no texts to tokenise: give at least one string")
        ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        if prepend_bos and self.bos_id is not None:
            ids = [[self.bos_id, *x] for x in ids]
        if not any(ids):
            raise ValueError("empty prompt: there is no token to run (pass prepend_bos=True or some text)")
        return pad_left(ids, 0)

    def to_str_tokens(self, input: Any, prepend_bos: bool = True) -> list[str] | list[list[str]]:
        """Each token as its text (TransformerLens's `to_str_tokens`): a list for one text or one row of ids,
        a list of lists (padding dropped) for a batch."""
        if self.tokenizer is None:
            raise ValueError(f"model {self.source} has no tokenizer")
        toks = resolve(self, input, None, prepend_bos)
        rows = [
            [self.tokenizer.decode([int(t)], skip_special_tokens=False) for t in row[mask == 1]]
            for row, mask in zip(*toks, strict=True)
        ]
        single = isinstance(input, str) or (not isinstance(input, tuple | list) and np.asarray(input).ndim == 1)
        return rows[0] if single else rows

    def to_string(self, tokens: Any) -> str | list[str]:
        """Token ids back to text (TransformerLens's `to_string`): a string for (seq,), a list for (batch, seq)."""
        if self.tokenizer is None:
            raise ValueError(f"model {self.source} has no tokenizer")
        arr = np.asarray(tokens)
        if arr.ndim == 1:
            return self.tokenizer.decode([int(t) for t in arr], skip_special_tokens=False)
        return [self.tokenizer.decode([int(t) for t in row], skip_special_tokens=False) for row in arr]

    def _hook_pairs(self, hooks: Mapping[str, Callable] | None, fwd_hooks: Sequence) -> list[tuple[str, Callable]]:
        pairs = hook_pairs(self.hook_names(), hooks, fwd_hooks)
        validate_hook_names([n for n, _ in pairs], self.cfg)
        return pairs

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
        shared_noise: bool = False,
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
            shared_noise=shared_noise,
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


# These caches hold compiled programs keyed by config and hook names, never weights (params are arguments).
@functools.lru_cache(maxsize=64)
def _cached_forward(cfg: ModelConfig, names: tuple[str, ...], stop_at_layer: int | None):
    def run(params, tokens, pad_mask):
        return tuple(forward(params, cfg, tokens, pad_mask, HookContext(cache=names), stop_at_layer))

    return jax.jit(run, compiler_options=forward_options())


@functools.lru_cache(maxsize=64)
def _hooked_forward(cfg: ModelConfig, hooks: LiftedHooks):
    def run(params, tokens, pad_mask, data):
        return forward(params, cfg, tokens, pad_mask, HookContext(hooks=hooks.bind(data))).logits

    return jax.jit(run, compiler_options=forward_options())
