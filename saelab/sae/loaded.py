"""LoadedSAE: an SAE read from disk, with the hook, model and input normalisation it belongs to.

Every format (saelab's own export, SAELens, Gemma Scope, Llama Scope, EleutherAI sparsify) loads into this
one record. Constant input scales (SAELens `expected_average_only_in`, Llama Scope's dataset norm) are folded
into the parameters at load time, so `encode(params, x, cfg)` on raw activations is exact for them; only a
per-token normalisation (`constant_norm_rescale`, `layer_norm`) stays in `norm`, and `LoadedSAE.encode` /
`LoadedSAE.decode` apply it.

It also answers the calls a SAELens user makes on a `sae_lens.SAE` (sae_lens/saes/sae.py, 6.x): `encode`,
`decode`, `forward` / `__call__` on activations with any leading dimensions, the weight attributes `W_enc`,
`b_enc`, `W_dec`, `b_dec`, `threshold`, `cfg.metadata.hook_name` and friends, `cfg.architecture()`, and the
classmethods `from_pretrained(release, sae_id)` and `load_from_disk(path)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from saelab.sae.affine import decode
from saelab.sae.config import ComputeDtype, SAEConfig
from saelab.sae.decoder_norm import decoder_norm_error, fold_decoder_norm
from saelab.sae.params import SAEParams
from saelab.sae.registry import encode, get_architecture
from saelab.sae.saelens_cfg import saelens_cfg
from saelab.sae.transcoder import with_skip

RuntimeNorm = Literal["none", "constant_norm_rescale", "layer_norm"]
LAYER_NORM_EPS = 1e-5  # SAELens's run_time_activation_ln_in default
UNIT_TOLERANCE = 1e-5  # max |decoder row norm - 1| of a unit-norm decoder (sae-bench's check_decoder_norms, float32)


class InputNorm(NamedTuple):
    """How an SAE's input is normalised: what the file says, what was folded, what runs per token."""

    runtime: RuntimeNorm = "none"  # per-token normalisation applied around encode/decode (not foldable)
    folded_scale: float | None = None  # constant input scale s folded into the weights (x * s at training)
    declared: str = "none"  # the format's own name for it (e.g. SAELens's normalize_activations value)

    def describe(self) -> str:
        """One line for `saelab sae info`."""
        if self.runtime == "constant_norm_rescale":
            return f"{self.declared}: each token rescaled to norm sqrt(d_in) before encoding, undone after decoding"
        if self.runtime == "layer_norm":
            return f"{self.declared}: each token standardised (mean 0, std 1) before encoding, undone after decoding"
        if self.folded_scale is not None:
            return f"{self.declared}: inputs were scaled by {self.folded_scale:.6g}; folded into the weights"
        return f"{self.declared}: none (raw activations)"


class _Fields(NamedTuple):
    params: SAEParams
    cfg: SAEConfig
    metadata: dict[str, Any]  # model_name, hook_name, hook_head_index, prepend_bos, context_size, ...
    norm: InputNorm = InputNorm()
    format: str = "saelens"  # the on-disk format it came from (saelab.sae.formats.FORMATS)


class LoadedSAE(_Fields):
    """Parameters, config and provenance of one SAE; hook and model live in `metadata` as SAELens writes them.

    Fields (a NamedTuple: positional construction, `._replace` and unpacking work as before): `params`
    (SAEParams), `cfg` (saelab's SAEConfig), `metadata` (a dict), `norm` (InputNorm), `format`.

    SAELens's calls, for a user coming from `sae_lens.SAE`:
    - `encode(x)`, `decode(codes, x=None)`, `forward(x)` / `sae(x)` take activations with any leading
      dimensions, (..., d_in) -> (..., d_sae) -> (..., d_out), flattening to (tokens, d) and back, and trace
      under `jax.jit`. `decode` needs `x` only for a per-token normalisation (SAELens keeps those statistics
      in the module between its `encode` and `decode` calls; saelab is stateless and takes the input instead).
    - `W_enc` (d_in, d_sae), `b_enc`, `W_dec` (d_sae, d_out), `b_dec`, `threshold` (None without one): the
      arrays of `params`, with SAELens's names and layouts (constant input scales already folded in).
    - `cfg` stays saelab's SAEConfig (every field, equality and hash unchanged, so it goes wherever an SAEConfig
      goes), and on a LoadedSAE it carries three SAELens read-outs as plain instance attributes outside the
      pydantic fields (as `functools.cached_property` values sit there; dumps, equality and hash ignore them):
      `cfg.metadata` (a read-only SAELens-SAEMetadata-like view of `metadata`: `cfg.metadata.hook_name`,
      `.model_name`, `.context_size`, `.prepend_bos`, ...; a missing key reads None, as in SAELens),
      `cfg.normalize_activations` (the per-token normalisation `encode` applies, "none" once a constant scale
      is folded) and `cfg.architecture`, which still equals saelab's name ("relu") but, called as SAELens
      calls it, `cfg.architecture()`, returns SAELens's name ("standard"). `cfg.d_in`, `cfg.d_sae`, `cfg.k`
      and `cfg.apply_b_dec_to_input` are saelab fields with SAELens's names already.
    - `LoadedSAE.from_pretrained(release, sae_id)` (saelab.sae.releases.load_pretrained) and
      `LoadedSAE.load_from_disk(path)` (saelab.sae.load_sae).
    """

    __slots__ = ()

    def __new__(
        cls,
        params: SAEParams,
        cfg: SAEConfig,
        metadata: dict[str, Any],
        norm: InputNorm = InputNorm(),  # noqa: B008 - an immutable NamedTuple
        format: str = "saelens",  # noqa: A002 - the field's name
    ) -> LoadedSAE:
        return super().__new__(cls, params, saelens_cfg(cfg, metadata, norm.runtime), metadata, norm, format)

    @classmethod
    def _make(cls, iterable: Any) -> LoadedSAE:
        """`_replace` builds through `_make`; route it through `__new__` so `cfg.metadata` follows `metadata`."""
        return cls(*iterable)

    # ---- provenance ----

    @property
    def hook_name(self) -> str | None:
        return self.metadata.get("hook_name")

    @property
    def hook_head_index(self) -> int | None:
        """The attention head the SAE reads at an `attn.hook_z` hook (its input is that head's d_head slice)."""
        return self.metadata.get("hook_head_index")

    @property
    def model_name(self) -> str | None:
        return self.metadata.get("model_name")

    @property
    def prepend_bos(self) -> bool:
        return bool(self.metadata.get("prepend_bos", True))

    # ---- SAELens's weight attributes ----

    @property
    def W_enc(self) -> jax.Array:  # noqa: N802 - SAELens's name
        """(d_in, d_sae)"""
        return self.params.W_enc

    @property
    def b_enc(self) -> jax.Array:
        """(d_sae,)"""
        return self.params.b_enc

    @property
    def W_dec(self) -> jax.Array:  # noqa: N802 - SAELens's name
        """(d_sae, d_out)"""
        return self.params.W_dec

    @property
    def b_dec(self) -> jax.Array:
        """(d_out,)"""
        return self.params.b_dec

    @property
    def threshold(self) -> jax.Array | None:
        """(d_sae,) for jumprelu / batchtopk, None for architectures without a threshold."""
        return self.params.threshold

    # ---- inference ----

    def encode(self, x: jax.Array) -> jax.Array:
        """Codes (..., d_sae) of raw activations x (..., d_in), per-token normalisation included."""
        _check_last(x, self.cfg.d_in, "x", "d_in")
        xn = normalise_in(self.norm, x, self.cfg.d_in)[0]  # (..., d_in)
        codes = encode(self.params, xn.reshape(-1, self.cfg.d_in), self.cfg)  # (tokens, d_sae)
        return codes.reshape(*x.shape[:-1], self.cfg.d_sae)

    def decode(self, codes: jax.Array, x: jax.Array | None = None) -> jax.Array:
        """Reconstruction (..., d_out) in raw units of codes (..., d_sae). x (..., d_in), the encoded input,
        gives the per-token statistics a runtime normalisation undoes; without one it may be left out."""
        _check_last(codes, self.cfg.d_sae, "codes", "d_sae")
        if x is None and self.norm.runtime != "none":
            raise ValueError(
                f"this SAE normalises each token ({self.norm.runtime}, declared {self.norm.declared!r}), and "
                "decode undoes that with the statistics of the input those codes were encoded from; saelab keeps no "
                "state between encode and decode (SAELens stores them in the module), so pass it: "
                "sae.decode(codes, x), or call sae.forward(x) / sae(x) for decode(encode(x))"
            )
        flat = decode(self.params, codes.reshape(-1, self.cfg.d_sae), self.cfg.compute_dtype)  # (tokens, d_out)
        y = flat.reshape(*codes.shape[:-1], self.cfg.resolved_d_out)
        if x is None:
            return y
        _check_last(x, self.cfg.d_in, "x", "d_in")
        if x.shape[:-1] != codes.shape[:-1]:
            raise ValueError(f"x {x.shape} and codes {codes.shape} must have the same leading dimensions")
        return normalise_out(self.norm, y, normalise_in(self.norm, x, self.cfg.d_in)[1])

    def forward(self, x: jax.Array) -> jax.Array:
        """decode(encode(x), x) in raw units, (..., d_in) -> (..., d_out), plus a skip-transcoder's x @ W_skip
        (SAELens's `sae(x)`)."""
        y = self.decode(self.encode(x), x)  # (..., d_out)
        if not self.cfg.has_skip:
            return y
        flat = with_skip(self.params, x.reshape(-1, self.cfg.d_in), y.reshape(-1, self.cfg.resolved_d_out), self.cfg)
        return flat.reshape(y.shape)

    __call__ = forward

    def reconstruct(self, x: jax.Array) -> jax.Array:
        """decode(encode(x)) in raw units, (..., d_out); the same as `forward`."""
        return self.forward(x)

    def fold_W_dec_norm(self) -> LoadedSAE:  # noqa: N802 - SAELens's name
        """This SAE with unit decoder rows, each row's norm folded into its encoder column, bias and threshold
        (SAELens's `fold_W_dec_norm`, which works in place; this returns a new LoadedSAE): the same reconstruction.
        An architecture whose codes would change (TopK's selection) is returned as is when its rows are already
        unit (to 1e-5) and refused otherwise, as SAELens refuses."""
        if decoder_norm_error(self.params.W_dec) <= UNIT_TOLERANCE:
            return self
        if not get_architecture(self.cfg.architecture).folds_decoder_norm:
            raise ValueError(
                f"a {self.cfg.architecture} SAE's codes depend on its decoder norms (folding them would change which "
                "latents it picks), and its decoder rows are not unit norm; evaluate it as it is"
            )
        return self._replace(params=fold_decoder_norm(self.params))

    # ---- SAELens's constructors ----

    @classmethod
    def from_pretrained(
        cls,
        release: str,
        sae_id: str,
        *,
        runtime_norm: bool = False,
        compute_dtype: ComputeDtype | None = None,
    ) -> LoadedSAE:
        """SAELens's `SAE.from_pretrained(release, sae_id)`: saelab.sae.releases.load_pretrained (which see for
        the releases known and the offline behaviour); runtime_norm accepts a per-token normalisation."""
        from saelab.sae.releases import load_pretrained  # releases imports this module

        return load_pretrained(release, sae_id, runtime_norm=runtime_norm, compute_dtype=compute_dtype)

    @classmethod
    def load_from_disk(cls, path: str | Path, **options: Any) -> LoadedSAE:
        """SAELens's `SAE.load_from_disk(path)`: saelab.sae.load_sae (any format; options as there)."""
        from saelab.sae.saelens_io import load_sae

        return load_sae(path, **options)


def _check_last(a: jax.Array, width: int, what: str, dim: str) -> None:
    if a.ndim < 1 or a.shape[-1] != width:
        raise ValueError(f"{what} must have shape (..., {dim}={width}), got {a.shape}")


class Stats(NamedTuple):
    """Per-token statistics of `normalise_in`, each (..., 1), that `normalise_out` undoes."""

    shift: jax.Array  # layer_norm: the token mean
    coeff: jax.Array  # constant_norm_rescale: sqrt(d_in) / ||x||
    std: jax.Array  # layer_norm: the token std (unbiased, as torch.std)


def normalise_in(norm: InputNorm, x: jax.Array, d_in: int) -> tuple[jax.Array, Stats]:
    """(normalised x, stats) as SAELens's run_time_activation_norm_fn_in computes them (sae_lens/saes/sae.py)."""
    x = x.astype(jnp.float32)
    zero, one = jnp.zeros(x.shape[:-1] + (1,), x.dtype), jnp.ones(x.shape[:-1] + (1,), x.dtype)
    if norm.runtime == "constant_norm_rescale":  # Anthropic's February 2024 update
        coeff = jnp.sqrt(jnp.float32(d_in)) / jnp.linalg.norm(x, axis=-1, keepdims=True)
        return x * coeff, Stats(zero, coeff, one)
    if norm.runtime == "layer_norm":
        mu = x.mean(-1, keepdims=True)
        std = jnp.std(x - mu, axis=-1, keepdims=True, ddof=1)
        return (x - mu) / (std + LAYER_NORM_EPS), Stats(mu, one, std)
    return x, Stats(zero, one, one)


def normalise_out(norm: InputNorm, y: jax.Array, stats: Stats) -> jax.Array:
    """Undo `normalise_in` on a reconstruction, as SAELens's run_time_activation_norm_fn_out does (the
    layer_norm inverse multiplies by the std without the eps, as there)."""
    if norm.runtime == "constant_norm_rescale":
        return y / stats.coeff
    if norm.runtime == "layer_norm":
        return y * stats.std + stats.shift
    return y
