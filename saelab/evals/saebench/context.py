"""What every SAEBench evaluator reads: `BenchContext` (the SAE, its model and hook, the eval settings, a progress
display) and the activations it is scored on, from the model on held-out text or from an activation store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saelab.data import open_corpus
from saelab.evals.batches import token_batches
from saelab.evals.config import EvalConfig
from saelab.evals.saebench.act_cache import CacheKey, cached
from saelab.evals.saebench.sizes import SuiteSizes, resolve
from saelab.models import Model
from saelab.models.hook_views import sae_input
from saelab.models.inputs import pad_left
from saelab.sae import LoadedSAE, decode, encode


@dataclass
class BenchContext:
    """One SAE under evaluation: the SAE, the model it reads (loaded on first use), its hook, the settings and
    the progress display each evaluator adds its bar to."""

    cfg: EvalConfig
    sae: LoadedSAE
    model_name: str
    hook: str
    progress: Any  # a rich Progress (saelab.runtime.progress.progress_bar)
    head: int | None = None
    _model: Model | None = field(default=None, repr=False)
    _acts: dict[int, list[np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def model(self) -> Model:
        """The model, loaded on first use (the weight-only evaluators never load it)."""
        if self._model is None:
            self._model = Model.load(self.model_name, process=self.cfg.model_processing or "none")
        return self._model

    @property
    def variant(self) -> str:
        """The workload's name (`quick`, `medium`, `full`, with any size set over it)."""
        return resolve(self.cfg)[0]

    @property
    def sizes(self) -> SuiteSizes:
        """The workload of this run (sizes.py)."""
        return resolve(self.cfg)[1]

    @property
    def n_tokens(self) -> int:
        """Tokens for the token-level metrics (core, MDL): `cfg.tokens`, or the variant's batches."""
        n = self.sizes.token_batches
        return self.cfg.tokens if n is None else n * self.cfg.batch * self.cfg.context

    def codec(self) -> tuple[Callable, Callable]:
        """Jitted (encode(params, x (n, d_in)) -> codes (n, d_sae), decode(params, codes) -> x_hat)."""
        cfg = self.sae.cfg
        return (lambda p, x: _enc(p, x, cfg)), _dec

    def tokens(self, n_tokens: int) -> Iterator[jax.Array]:
        """Held-out token batches (batch, context) of the eval corpus, BOS first, until `n_tokens`."""
        corpus = open_corpus(self.cfg.corpus, self.cfg.split, self.cfg.heldout_fraction)
        yield from token_batches(corpus, self.model, self.cfg.context, self.cfg.batch, n_tokens)

    def hook_acts(self, tokens: jax.Array) -> jax.Array:
        """The SAE's input at its hook for a token batch: (batch, seq, d_in) float32."""
        _, cache = self.model.run_with_cache(tokens, [self.hook], stop_at_layer="auto", prepend_bos=False)
        return sae_input(cache[self.hook], self.head).astype(jnp.float32)

    @property
    def cache_dir(self) -> Path | None:
        """Where shared activations are kept (None: the cache is off)."""
        return self.cfg.suite_cache if self.cfg.use_suite_cache else None

    def cache_key(self, position: int | str) -> CacheKey:
        """What the hook's activations depend on besides the token ids (act_cache.py)."""
        return CacheKey(self.model_name, self.cfg.model_processing or "none", self.hook, self.head, position)

    def prompt_acts(self, ids: list[list[int]], position: int, what: str, batch_tokens: int = 8192) -> np.ndarray:
        """The hook's activations (n, d_in) float32 at `position` (negative: from the end) of each token list,
        read back from `cfg.suite_cache` when an earlier SAE at this hook ran the same prompts."""
        compute = lambda: [self._prompt_acts(ids, position, what, batch_tokens)]
        return cached(self.cache_dir, self.cache_key(position), ids, compute)[0]

    def _prompt_acts(self, ids: list[list[int]], position: int, what: str, batch_tokens: int) -> np.ndarray:
        """Lists of similar length run together, left-padded (the padding masked) to a bucket width and in a
        fixed number of rows per width, so one shape per width compiles; a progress bar named `what`."""
        out = np.zeros((len(ids), self.sae.cfg.d_in), np.float32)
        task = self.progress.add_task(what, total=len(ids), info=f"{len(ids)} prompts")
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        done, start = 0, 0
        while start < len(order):
            width = bucket(len(ids[order[start]]))
            rows = max(1, batch_tokens // width)
            chunk = [i for i in order[start : start + rows] if len(ids[i]) <= width]
            seqs = [ids[i] for i in chunk] + [ids[chunk[0]]] * (rows - len(chunk))  # fixed shape: repeat a row
            toks = pad_left(seqs, 0, width)
            _, cache = self.model.run_with_cache(toks, [self.hook], "auto")
            out[chunk] = np.asarray(sae_input(cache[self.hook], self.head)[: len(chunk), position], np.float32)
            start += len(chunk)
            done += len(chunk)
            self.progress.update(task, completed=done)
        return out

    def special_ids(self) -> np.ndarray:
        """The token ids SAEBench leaves out (its `ignore_tokens`): BOS, EOS and padding."""
        m = self.model
        return np.asarray(sorted({i for i in (m.bos_id, m.eos_id, *m.pad_ids) if i is not None}), np.int32)

    def activations(self, n_tokens: int, what: str) -> list[np.ndarray]:
        """Per SAEBench batch, the (n_b, d_in) float32 activations of its ordinary tokens (BOS, EOS and padding
        left out, as sae-bench's `ignore_tokens`): from the model on the eval corpus's `n_tokens`, or from
        `suite_store` (its stored non-BOS tokens in order, in batches of `batch x (context - 1)`). Kept for the
        next evaluator that asks for as many tokens; a progress bar named `what`."""
        if n_tokens not in self._acts:
            self._acts[n_tokens] = self._read_activations(n_tokens, what)
        return self._acts[n_tokens]

    def _read_activations(self, n_tokens: int, what: str) -> list[np.ndarray]:
        if self.cfg.suite_store is not None:
            acts = store_activations(self.cfg.suite_store, self.hook, n_tokens)
            chunk = self.cfg.batch * (self.cfg.context - 1)
            return [acts[s : s + chunk] for s in range(0, len(acts), chunk)]
        toks = list(self.tokens(n_tokens))
        compute = lambda: self._model_activations(toks, n_tokens, what)
        batches = cached(self.cache_dir, self.cache_key("tokens"), toks, compute)
        if not batches:
            raise ValueError(f"corpus {self.cfg.corpus!r} ({self.cfg.split}) yielded no text; use another --corpus")
        return batches

    def _model_activations(self, toks: list[jax.Array], n_tokens: int, what: str) -> list[np.ndarray]:
        """Per token batch, the hook's activations at its ordinary tokens (BOS, EOS and padding left out)."""
        task = self.progress.add_task(what, total=n_tokens, info=self.cfg.corpus)
        special = self.special_ids()
        batches, done = [], 0
        for t in toks:
            keep = ~np.isin(np.asarray(t), special)  # (b, t)
            batches.append(np.asarray(self.hook_acts(t))[keep])
            done += t.size
            self.progress.update(task, completed=min(done, n_tokens))
        return batches


def bucket(length: int) -> int:
    """The padded width of a token list: a multiple of 4 up to 32, of 8 up to 128, of 32 beyond."""
    step = 4 if length <= 32 else 8 if length <= 128 else 32
    return -(-length // step) * step


def store_activations(store_dir: Path, hook: str, n_tokens: int) -> np.ndarray:
    """The first `n_tokens` non-BOS activations of `hook` in an activation store, float32 (n, d_in)."""
    from saelab.store import ActivationStore

    store = ActivationStore(store_dir)
    if hook not in store.hooks:
        raise ValueError(f"store {store_dir} has no hook {hook!r} (it holds {store.hooks}); pass another --suite-store")
    idx = np.sort(store.train_indices(include_bos=False))[:n_tokens]
    return store.activations(hook).take(idx, np.float32)


@partial(jax.jit, static_argnums=2)
def _enc(params, x, cfg):
    return encode(params, x.astype(jnp.float32), cfg)


@jax.jit
def _dec(params, codes):
    return decode(params, codes)
