"""Interventions on the replacement model: set or scale transcoder features (and error nodes), then read the
logits or generate, so a user checks a circuit of an attribution graph by changing it (Ameisen et al. 2025,
"Circuit Tracing", section on validating graphs with interventions; circuit-tracer's `feature_intervention`).

The replacement model is the one `saelab.evals.replacement` evaluates: at each replaced layer the transcoder
reads the MLP's input (`blocks.L.ln2.hook_normalized`) and its output takes the MLP's place at
`blocks.L.hook_mlp_out`. An edit changes a feature's activation by `delta = new - current`; the layer's output,
and for a cross-layer transcoder every later layer's, moves by `delta * W_dec` (the decoder row into that
layer), and the change propagates through the rest of the model (norms are not frozen; attention patterns
are, at the unedited run's, with `freeze_attention`). With error terms on, each layer also adds its error
`mlp_out - transcoder(x)` of the same forward, so with no edits the model is the clean one and an edit moves
it exactly as circuit-tracer's `feature_intervention` does with the same `freeze_attention`; an error node is
that term at one layer (and position), which an edit scales (0 removes it).

Position 0 (BOS) keeps the model's own MLP output, as in the eval's splice, so edits start at position 1. A
position of None edits every position, generated ones included.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saelab.evals.replacement import Replacement
from saelab.models import forward
from saelab.models.generate import DEFAULT_NEW_TOKENS, generate_text
from saelab.models.hooks import HookContext
from saelab.sae.clt import CLTParams
from saelab.sae.params import SAEParams

ALL, ERROR = "all", "error"


class Edit(NamedTuple):
    """One intervention: at replaced layer `layer`, `feature` (an index, "all" for every feature of the layer,
    or "error" for the layer's error node) at `position` (None: every position from 1 on) is set to `value` or
    multiplied by `scale` (give exactly one; an error node takes a scale only)."""

    layer: int
    feature: int | Literal["all", "error"]
    position: int | None = None
    value: float | None = None
    scale: float | None = None


class EditArrays(NamedTuple):
    """Edits as data (k,) columns, so edits of one count share a compiled program whatever their numbers."""

    layer: jax.Array  # int32
    feature: jax.Array  # int32; -1: every feature ("all"), -2: the error node
    position: jax.Array  # int32; -1: every position
    is_set: jax.Array  # bool: set to `amount` (else multiply by it)
    amount: jax.Array  # float32


class Intervened(NamedTuple):
    logits: jax.Array  # (batch, seq, vocab)
    codes: tuple[jax.Array, ...]  # per replaced layer, (batch, seq, d_sae): the activations after the edits


class Continuations(NamedTuple):
    clean: str  # the replacement model (same error-term setting) without edits
    edited: str


def intervene(
    model: Any,
    rep: Replacement,
    tokens: Any,
    edits: Sequence[Edit] = (),
    use_error_term: bool = False,
    freeze_attention: bool = False,
) -> Intervened:
    """Logits and feature activations of the replacement model on `tokens` (batch, seq) with `edits` applied
    (positions count from the first token; the first is the BOS the transcoders skip). `freeze_attention`
    holds every attention pattern at the unedited run's (circuit-tracer's default), so an edit acts through
    the residual stream, the norms and the MLPs only."""
    arrays = edit_arrays(rep, edits, use_error_term)
    toks = jnp.atleast_2d(jnp.asarray(tokens, jnp.int32))
    rows = jnp.ones((toks.shape[0],), bool)
    fn = _jitted_forward(model.cfg, _static(rep, use_error_term), freeze_attention)
    return fn(model.params, rep.params, arrays, rows, toks)


def generate(
    model: Any,
    rep: Replacement,
    prompt: str,
    edits: Sequence[Edit],
    use_error_term: bool = False,
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    **sampling: Any,
) -> Continuations:
    """The continuation of `prompt` by the replacement model without and with `edits` (greedy unless
    `sampling` says otherwise: temperature, top_k, top_p, seed), two rows of one compiled loop."""
    arrays = edit_arrays(rep, edits, use_error_term)
    sampling.setdefault("shared_noise", True)  # both rows draw the same noise: the edits are the only difference
    ctx = _Context(_static(rep, use_error_term))
    args = (rep.params, arrays, jnp.asarray([False, True]))
    out = generate_text(model, [prompt, prompt], max_new_tokens, context=ctx, context_args=args, **sampling)
    return Continuations(str(out[0]), str(out[1]))


def edit_arrays(rep: Replacement, edits: Sequence[Edit], use_error_term: bool) -> EditArrays:
    """Check `edits` against the replacement's layers and widths and pack them as data; a ValueError names the
    bad edit and the fix."""
    widths = layer_widths(rep)
    edits = [Edit(*e) for e in edits]
    for e in edits:
        _check(e, widths, use_error_term)
    for i, a in enumerate(edits):
        for b in edits[i + 1 :]:
            if _overlap(a, b):
                raise ValueError(f"edits {a} and {b} touch the same activation; give one edit for it")
    code = lambda f: {ALL: -1, ERROR: -2}.get(f, f)  # noqa: E731
    col = lambda xs, dt: jnp.asarray(np.asarray(list(xs), dt).reshape(-1))  # noqa: E731
    return EditArrays(
        col((e.layer for e in edits), np.int32),
        col((code(e.feature) for e in edits), np.int32),
        col((-1 if e.position is None else e.position for e in edits), np.int32),
        col((e.value is not None for e in edits), bool),
        col((e.scale if e.value is None else e.value for e in edits), np.float32),
    )


def layer_widths(rep: Replacement) -> tuple[int, ...]:
    """d_sae of each replaced layer (a transcoder set's or a CLT's)."""
    if isinstance(rep.params, CLTParams):
        return tuple(int(w.shape[0]) for w in rep.params.W_dec)
    if isinstance(rep.params, tuple) and all(isinstance(p, SAEParams) for p in rep.params):
        return tuple(int(p.W_dec.shape[0]) for p in rep.params)
    raise ValueError(
        "interventions need a transcoder set or a cross-layer transcoder (plt_replacement, clt_replacement)"
    )


def decoder(params: Any, source: int, target: int) -> jax.Array | None:
    """The decoder (d_sae, d_out) from the features of layer `source` into the output of layer `target`, or
    None where they write nothing (a per-layer transcoder writes only its own layer)."""
    if isinstance(params, CLTParams):
        return params.W_dec[source][:, target - source] if target >= source else None
    return params[source].W_dec if source == target else None


def _check(e: Edit, widths: tuple[int, ...], use_error_term: bool) -> None:
    if not 0 <= e.layer < len(widths):
        raise ValueError(f"{e}: layer must be in [0, {len(widths) - 1}], the replaced layers")
    if e.position is not None and e.position < 1:
        raise ValueError(f"{e}: position 0 (BOS) keeps the model's own MLP output; edit positions >= 1 (None: all)")
    if (e.value is None) == (e.scale is None):
        raise ValueError(f"{e}: give exactly one of value (set the activation) or scale (multiply it)")
    if e.feature == ERROR:
        if e.value is not None:
            raise ValueError(f"{e}: an error node is a vector; scale it (0 removes it), it takes no value")
        if not use_error_term:
            raise ValueError(f"{e}: error nodes exist with error terms only; pass use_error_term=True")
    elif e.feature != ALL and not (isinstance(e.feature, int | np.integer) and 0 <= e.feature < widths[e.layer]):
        raise ValueError(f"{e}: feature must be in [0, {widths[e.layer] - 1}], {ALL!r} or {ERROR!r}")


def _overlap(a: Edit, b: Edit) -> bool:
    same_pos = a.position is None or b.position is None or a.position == b.position
    if a.layer != b.layer or not same_pos:
        return False
    if ERROR in (a.feature, b.feature):
        return a.feature == b.feature
    return ALL in (a.feature, b.feature) or a.feature == b.feature


class _Static(NamedTuple):
    """The compiled program's identity: hooks, step, widths, error terms (hashable)."""

    hooks_in: tuple[str, ...]
    hooks_out: tuple[str, ...]
    step: Any
    carry: Any
    widths: tuple[int, ...]
    use_error_term: bool


def _static(rep: Replacement, use_error_term: bool) -> _Static:
    return _Static(rep.hooks_in, rep.hooks_out, rep.step, rep.carry, layer_widths(rep), use_error_term)


class ReplacementContext(HookContext):
    """A HookContext running the replacement model with edits: at each layer's input hook the transcoder
    encodes and the edits change its codes; at its output hook the transcoder's output (plus the scaled error
    term) replaces the MLP's, for the rows where `rows` (batch,) is true (elsewhere: the unedited replacement)."""

    def __init__(
        self, s: _Static, params: Any, edits: EditArrays, rows: jax.Array, hooks: dict | None = None, cache=()
    ) -> None:
        super().__init__(hooks=hooks, cache=cache)
        self.s, self.params, self.edits, self.rows = s, params, edits, rows
        self.carry = s.carry
        self.y_hat: dict[int, jax.Array] = {}
        self.deltas: dict[int, jax.Array] = {}  # layer -> (n, d_sae): edited minus current codes
        self.codes: dict[int, jax.Array] = {}
        self.index_in = {h: i for i, h in enumerate(s.hooks_in)}
        self.index_out = {h: i for i, h in enumerate(s.hooks_out)}

    def __call__(self, name: str, x: jax.Array) -> jax.Array:
        if name in self.index_out:
            x = self._write(self.index_out[name], x)
        x = super().__call__(name, x)
        if name in self.index_in:
            self._read(self.index_in[name], x)
        return x

    def _rows(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(x rows (n, d) float32, their positions (n,), whether edits apply to them (n,))."""
        b, t, d = x.shape
        pos = jnp.broadcast_to(self.positions, (b, t)).reshape(-1)
        on = jnp.broadcast_to(self.rows[:, None], (b, t)).reshape(-1) & (pos > 0)
        return x.reshape(-1, d).astype(jnp.float32), pos, on

    def _hits(self, i: int, pos: jax.Array, on: jax.Array) -> jax.Array:
        """(n, k): edit j applies to row r at layer i."""
        e = self.edits
        at = (e.position[None, :] == -1) | (pos[:, None] == e.position[None, :])
        return at & on[:, None] & (e.layer == i)[None, :]

    def _read(self, i: int, x: jax.Array) -> None:
        rows, pos, on = self._rows(x)
        y_hat, codes, self.carry = self.s.step(self.params, i, self.carry, rows)  # (n, d_out), (n, d_sae)
        e, hit = self.edits, self._hits(i, pos, on)
        feat = jnp.maximum(e.feature, 0)
        one = hit & (e.feature >= 0)[None, :]  # (n, k) single-feature edits
        cur = codes[:, feat]  # (n, k)
        new = jnp.where(e.is_set, e.amount, cur * e.amount)
        delta = jnp.zeros_like(codes).at[:, feat].add(jnp.where(one, new - cur, 0.0))
        every = hit & (e.feature == -1)[None, :]  # (n, k) whole-layer edits: at most one hits a row
        any_every = every.any(1, keepdims=True)
        is_set = (every & e.is_set).any(1, keepdims=True)
        amount = jnp.where(every, e.amount, 0.0).sum(1, keepdims=True)
        delta = delta + jnp.where(any_every, jnp.where(is_set, amount, codes * amount) - codes, 0.0)
        self.y_hat[i], self.deltas[i], self.codes[i] = y_hat, delta, codes + delta

    def _write(self, i: int, y: jax.Array) -> jax.Array:
        b, t, d = y.shape
        mlp, pos, on = self._rows(y)
        out = self.y_hat[i]
        for s in range(i + 1):  # the edits of this layer and, for a CLT, of every layer below
            w = decoder(self.params, s, i)
            if w is not None:
                out = out + self.deltas[s] @ w
        if self.s.use_error_term:
            e = self.edits
            hit = self._hits(i, pos, on) & (e.feature == -2)[None, :]
            scale = jnp.where(hit, e.amount, 1.0).prod(1, keepdims=True)  # (n, 1)
            out = out + scale * (mlp - self.y_hat[i])
        out = jnp.where((pos == 0)[:, None], mlp, out)  # BOS keeps the model's own MLP output
        return out.reshape(b, t, d).astype(y.dtype)


class _Context(NamedTuple):
    """Builds the replacement context inside the jitted generation loop (hashed by its static part)."""

    s: _Static

    def __call__(self, args: tuple[Any, EditArrays, jax.Array]) -> ReplacementContext:
        return ReplacementContext(self.s, *args)


@functools.lru_cache(maxsize=16)
def _jitted_forward(cfg: Any, s: _Static, freeze_attention: bool):
    patterns = tuple(f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.n_layers))

    def run(model_params, params, edits, rows, tokens):
        hooks = None
        if freeze_attention:  # the patterns of the unedited run (no row edited), held in the edited one
            unedited = ReplacementContext(s, params, edits, jnp.zeros_like(rows), cache=patterns)
            forward(model_params, cfg, tokens, None, unedited)
            hooks = {name: (lambda x, p=unedited.cache[name]: p) for name in patterns}
        ctx = ReplacementContext(s, params, edits, rows, hooks)
        logits = forward(model_params, cfg, tokens, None, ctx).logits
        b, t = tokens.shape
        codes = tuple(ctx.codes[i].reshape(b, t, -1) for i in range(len(s.hooks_in)))
        return Intervened(logits, codes)

    return jax.jit(run)
