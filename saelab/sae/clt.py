"""Cross-layer transcoders (CLTs; Ameisen et al. 2025, "Circuit Tracing", the replacement model's MLPs).

A CLT has an encoder per layer, reading that layer's MLP input x_l (`blocks.L.ln2.hook_normalized`), and for a
feature of layer l a decoder into the MLP output of every layer t >= l (`blocks.T.hook_mlp_out`):

    codes[:, l] = act(x[:, l] @ W_enc[l] + b_enc[l])                       # (batch, d_sae) per layer
    y_hat[:, t] = sum_{l <= t} codes[:, l] @ W_dec[l][:, t - l] + b_dec[t]  # (batch, d_out) per layer

`act` is TopK per layer per token (trained with AuxK) or JumpReLU (trained with the L0 penalty), as saelab's
topk.py and jumprelu.py define them. The loss sums over the target layers: sum_t mse_t + the sparsity term of
every source layer (sum_l AuxK_l, or the L0 summed over layers), so a CLT whose decoders to later layers are
zero is a set of per-layer transcoders and its loss is the sum of theirs (tests/sae/test_clt.py).

Layout: `W_dec` is a tuple of L arrays, W_dec[l] (d_sae, L - l, d_out), as circuit-tracer stores `W_dec_{l}`,
so the export is a copy and the sparse decoder reads the k chosen rows of W_dec[l] as (k, (L - l) * d_out)
rows: one gather per source layer covers every target layer (saelab.sae.clt_kernels). Latent bookkeeping
(dead mask, firing counts) is flattened layer-major to (L * d_sae,), which `CLTParams.d_sae` reports.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from pydantic import model_validator

from saelab.sae.auxk import auxk_loss
from saelab.sae.clt_kernels import CLTCodes, clt_decode_codes, clt_topk_codes, layer_rows
from saelab.sae.config import SAEConfig, check_k, check_nonnegative, check_positive, resolve_k_aux
from saelab.sae.jumprelu import effective_threshold, jumprelu, step
from saelab.sae.losses import AuxState, LossOutput, dense_l0_and_counts, loss_output, reconstruction, zero
from saelab.sae.params import SAEParams

__all__ = ["CLTConfig", "CLTParams", "init_params", "pre_activations", "encode", "decode", "loss", "train_loss"]


_TOPK_FIELDS = frozenset({"k", "k_aux", "aux_coefficient", "kernels"})
_JUMPRELU_FIELDS = frozenset({"l0_coefficient", "jumprelu_init_threshold", "bandwidth"})


class CLTConfig(SAEConfig):
    """A cross-layer transcoder over n_layers consecutive layers: d_sae latents per layer, TopK or JumpReLU."""

    architecture: Literal["clt"] = "clt"
    n_layers: int
    """Layers the CLT spans: an encoder for each layer's MLP input, decoders into its own and every later
    layer's MLP output."""
    d_out: int | None = None
    """Width of each MLP output it reconstructs; None means d_in (a transformer's MLP writes d_model)."""
    activation: Literal["topk", "jumprelu"] = "topk"
    """topk: k latents per layer per token, with AuxK (saelab.sae.topk); jumprelu: learned per-latent
    thresholds with an L0 penalty (saelab.sae.jumprelu)."""
    k: int = 32
    """topk: latents kept per layer per token."""
    k_aux: int | None = None
    """topk: dead latents per layer per token in the AuxK loss; None means d_in // 2, capped at d_sae."""
    aux_coefficient: float = 1 / 32
    """topk: weight of the AuxK loss, summed over source layers."""
    l0_coefficient: float = 1e-3
    """jumprelu: weight lambda of the L0 penalty (the L0 summed over layers)."""
    jumprelu_init_threshold: float = 1e-3
    """jumprelu: initial per-latent threshold, in units of the scaled input."""
    bandwidth: float = 1e-3
    """jumprelu: width of the rectangle kernel of the straight-through pseudo-derivatives."""
    kernels: Literal["sparse", "dense"] = "sparse"
    """topk: `sparse` touches only the k chosen rows of each layer's encoder and decoders in the backward pass;
    `dense` builds (batch, L, d_sae) codes and lets JAX differentiate (the tests' twin)."""

    @model_validator(mode="before")
    @classmethod
    def _output_space_bias(cls, data: Any) -> Any:
        """b_dec lives in the MLP-output space, so it is never subtracted from the input."""
        if isinstance(data, dict) and "apply_b_dec_to_input" not in data:
            return {**data, "apply_b_dec_to_input": False}
        return data

    @property
    def is_transcoder(self) -> bool:
        """Always: a CLT reads each layer's MLP input and reconstructs MLP outputs, never its own input."""
        return True

    @property
    def resolved_d_out(self) -> int:
        """Width of each reconstructed MLP output: d_out, or d_in when unset."""
        return self.d_in if self.d_out is None else self.d_out

    @property
    def resolved_k_aux(self) -> int:
        """k_aux with its default resolved (AuxKConfig's rule)."""
        return resolve_k_aux(self.k_aux, self.d_in, self.d_sae)

    @property
    def total_latents(self) -> int:
        """n_layers * d_sae: the length of the flattened dead mask and firing counts."""
        return self.n_layers * self.d_sae

    def initial_threshold(self) -> float | None:
        return self.jumprelu_init_threshold if self.activation == "jumprelu" else None

    @model_validator(mode="after")
    def _check_clt(self) -> CLTConfig:
        if self.n_layers < 1 or (self.d_out is not None and self.d_out < 1):
            raise ValueError(f"n_layers and d_out must be positive, got {self.n_layers}, {self.d_out}")
        if self.apply_b_dec_to_input:
            raise ValueError("a CLT's b_dec lives in the MLP-output space; set apply_b_dec_to_input = false")
        reads = _TOPK_FIELDS if self.activation == "topk" else _JUMPRELU_FIELDS
        # the other activation's fields at their defaults pass, so a full dump (model_dump) loads back
        others = (_TOPK_FIELDS | _JUMPRELU_FIELDS) - reads & self.model_fields_set
        stray = sorted(f for f in others if getattr(self, f) != type(self).model_fields[f].default)
        if stray:
            raise ValueError(f"{', '.join(stray)} do(es) not apply to a {self.activation} CLT; remove them")
        check_k(self.k if self.activation == "topk" else None, self.k_aux, self.d_sae)
        for name in ("aux_coefficient", "l0_coefficient", "jumprelu_init_threshold"):
            check_nonnegative(self, name)
        check_positive(self, "bandwidth")
        return self


class CLTParams(NamedTuple):
    """Parameters of a CLT, float32; a pytree like SAEParams (optax, orbax, jax.grad take it as it is)."""

    W_enc: jax.Array  # (L, d_in, d_sae)
    b_enc: jax.Array  # (L, d_sae)
    W_dec: tuple[jax.Array, ...]  # L arrays, W_dec[l]: (d_sae, L - l, d_out), source l -> targets l..L-1
    b_dec: jax.Array  # (L, d_out)
    threshold: jax.Array | None = None  # (L, d_sae) jumprelu

    @property
    def n_layers(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[1]

    @property
    def d_out(self) -> int:
        return self.b_dec.shape[1]

    @property
    def d_sae(self) -> int:
        """All latents, L * (latents per layer): the width of the trainer's per-latent bookkeeping."""
        return self.W_enc.shape[0] * self.W_enc.shape[2]


def check_clt_params(params: CLTParams, cfg: CLTConfig) -> None:
    """ValueError when a shape, a dtype or the presence of `threshold` does not fit the config."""
    L, d_in, d_sae, d_out = cfg.n_layers, cfg.d_in, cfg.d_sae, cfg.resolved_d_out
    if not isinstance(params, CLTParams) or len(params.W_dec) != L:
        raise ValueError(f"a CLT needs CLTParams with {L} decoder arrays")
    want = {"W_enc": (L, d_in, d_sae), "b_enc": (L, d_sae), "b_dec": (L, d_out)}
    want |= {f"W_dec[{l}]": (d_sae, L - l, d_out) for l in range(L)}
    have = {"W_enc": params.W_enc, "b_enc": params.b_enc, "b_dec": params.b_dec}
    have |= {f"W_dec[{l}]": w for l, w in enumerate(params.W_dec)}
    if cfg.uses_threshold:
        want["threshold"], have["threshold"] = (L, d_sae), params.threshold
    elif params.threshold is not None:
        raise ValueError("a topk CLT has no threshold, but params.threshold is set")
    for name, shape in want.items():
        value = have[name]
        if value is None or tuple(value.shape) != shape or value.dtype != jnp.float32:
            got = None if value is None else (tuple(value.shape), str(value.dtype))
            raise ValueError(f"params.{name} must be float32 {shape}, got {got}")


def init_params(key: jax.Array, cfg: CLTConfig) -> CLTParams:
    """Decoder rows (one latent's writes to all its target layers) of norm dec_init_norm, the encoder of each
    layer the transpose of its decoder into its own layer where d_in == d_out (SAELens' tied init), random
    rows of the same norm otherwise; biases zero, thresholds at their initial value."""
    L, d_in, d_sae, d_out = cfg.n_layers, cfg.d_in, cfg.d_sae, cfg.resolved_d_out
    k_dec, k_enc = jax.random.split(key)
    W_dec = []
    for l, kl in enumerate(jax.random.split(k_dec, L)):
        w = jax.random.normal(kl, (d_sae, (L - l) * d_out), jnp.float32)
        w = cfg.dec_init_norm * w / jnp.linalg.norm(w, axis=1, keepdims=True)
        W_dec.append(w.reshape(d_sae, L - l, d_out))
    if d_in == d_out:
        W_enc = jnp.stack([w[:, 0].T for w in W_dec])  # (L, d_in, d_sae)
        W_enc = cfg.dec_init_norm * W_enc / jnp.linalg.norm(W_enc, axis=1, keepdims=True)
    else:
        W_enc = jax.random.normal(k_enc, (L, d_in, d_sae), jnp.float32)
        W_enc = cfg.dec_init_norm * W_enc / jnp.linalg.norm(W_enc, axis=1, keepdims=True)
    t = cfg.initial_threshold()
    return CLTParams(
        W_enc=W_enc,
        b_enc=jnp.zeros((L, d_sae), jnp.float32),
        W_dec=tuple(W_dec),
        b_dec=jnp.zeros((L, d_out), jnp.float32),
        threshold=None if t is None else jnp.full((L, d_sae), t, jnp.float32),
    )


def pre_activations(params: CLTParams, x: jax.Array, cfg: CLTConfig) -> jax.Array:
    """`x[:, l] @ W_enc[l] + b_enc[l]` for every layer, float32 (batch, L, d_sae)."""
    dt = jnp.dtype(cfg.compute_dtype)
    pre = jnp.einsum("bld,lds->bls", x.astype(dt), params.W_enc.astype(dt), preferred_element_type=jnp.float32)
    return pre + params.b_enc


def encode(params: CLTParams, x: jax.Array, cfg: CLTConfig) -> jax.Array:
    """Inference codes, (batch, L, d_sae): the k largest per layer (ReLU on them) or z * 1[z > theta]."""
    x = check_inputs(x, cfg)
    if cfg.activation == "topk":
        codes, _ = clt_topk_codes(params, x, cfg, None)
        return codes.densify(cfg.d_sae)
    return jumprelu(pre_activations(params, x, cfg), effective_threshold(params), cfg.bandwidth)


def decode(params: CLTParams, codes: jax.Array, compute_dtype: str = "float32") -> jax.Array:
    """Dense decoder, (batch, L, d_sae) codes -> (batch, L, d_out): y_hat[:, t] = sum_{l<=t} codes[:, l] @
    W_dec[l][:, t - l] + b_dec[t]."""
    dt = jnp.dtype(compute_dtype)
    L = params.n_layers
    out = jnp.zeros((codes.shape[0], L, params.d_out), jnp.float32)
    for l, w in enumerate(params.W_dec):
        part = jnp.einsum("bs,std->btd", codes[:, l].astype(dt), w.astype(dt), preferred_element_type=jnp.float32)
        out = out.at[:, l:].add(part)  # (batch, L - l, d_out) into targets l..L-1
    return out + params.b_dec


def loss(params: CLTParams, x: jax.Array, cfg: CLTConfig, aux: AuxState, y: jax.Array) -> tuple[jax.Array, LossOutput]:
    """sum over target layers of the mse + the sparsity term (sum_l AuxK_l for topk, the L0 penalty summed
    over layers for jumprelu). l0 is the mean over layers of the active latents per token; latent_counts is
    (L * d_sae,), layer-major."""
    b = x.shape[0]
    if cfg.activation == "topk":
        use_aux = cfg.aux_coefficient > 0
        dead = aux.dead_mask.reshape(cfg.n_layers, cfg.d_sae) if use_aux else None
        codes, aux_codes = clt_topk_codes(params, x, cfg, dead)
        y_hat = clt_decode_codes(params, codes, cfg)  # (batch, L, d_out)
        rec = reconstruction(y.reshape(b, -1), y_hat.reshape(b, -1))
        aux_loss = _auxk(params, aux_codes, y - y_hat, dead, cfg) if use_aux else zero()
        counts = codes.latent_counts(cfg.d_sae)  # (L * d_sae,)
        total = rec.mse + cfg.aux_coefficient * aux_loss
        return loss_output(total, rec, counts.sum() / (b * cfg.n_layers), counts, aux_loss=aux_loss)
    pre = pre_activations(params, x, cfg)  # (batch, L, d_sae)
    theta = effective_threshold(params)  # (L, d_sae)
    codes = jumprelu(pre, theta, cfg.bandwidth)
    y_hat = decode(params, codes, cfg.compute_dtype)
    rec = reconstruction(y.reshape(b, -1), y_hat.reshape(b, -1))
    sparsity = cfg.l0_coefficient * aux.sparsity_scale * step(pre, theta, cfg.bandwidth).sum((1, 2)).mean()
    l0, counts = dense_l0_and_counts(codes.reshape(b, -1))
    return loss_output(rec.mse + sparsity, rec, l0 / cfg.n_layers, counts, sparsity_loss=sparsity)


def train_loss(
    params: CLTParams, x: jax.Array, cfg: CLTConfig, aux_state: AuxState | None = None, target: jax.Array | None = None
) -> tuple[jax.Array, LossOutput]:
    """The registry's loss for a CLT: x (batch, L, d_in) MLP inputs, target (batch, L, d_out) MLP outputs;
    checks shapes and the AuxState (dead mask (L * d_sae,)) first."""
    check_clt_params(params, cfg)
    x = check_inputs(x, cfg)
    want = (x.shape[0], cfg.n_layers, cfg.resolved_d_out)
    if target is None or tuple(target.shape) != want:
        raise ValueError(f"a CLT's target must be the MLP outputs, shape {want}, got {getattr(target, 'shape', None)}")
    if aux_state is None:
        aux_state = AuxState(jnp.zeros((cfg.total_latents,), bool), jnp.ones((), jnp.float32))
    if aux_state.dead_mask.shape != (cfg.total_latents,):
        raise ValueError(f"aux_state.dead_mask must have shape ({cfg.total_latents},), got {aux_state.dead_mask.shape}")
    return loss(params, x, cfg, aux_state, target.astype(jnp.float32))


def check_inputs(x: jax.Array, cfg: CLTConfig) -> jax.Array:
    """x as float32 after checking it is (batch, L, d_in)."""
    if x.ndim != 3 or x.shape[1:] != (cfg.n_layers, cfg.d_in):
        raise ValueError(f"x must be the MLP inputs, shape (batch, {cfg.n_layers}, {cfg.d_in}), got {x.shape}")
    return x.astype(jnp.float32)


def _auxk(params: CLTParams, aux: CLTCodes, residual: jax.Array, dead: jax.Array, cfg: CLTConfig) -> jax.Array:
    """sum_l AuxK_l: the dead latents of layer l reconstruct the residual of every layer they write to,
    (batch, (L - l) * d_out), normalised as in saelab.sae.auxk."""
    total = zero()
    for l in range(cfg.n_layers):
        view = SAEParams(params.W_enc[l], params.b_enc[l], layer_rows(params, l), params.b_dec[l:].reshape(-1))
        e = residual[:, l:].reshape(residual.shape[0], -1)  # (batch, (L - l) * d_out)
        total = total + auxk_loss(view, aux.layer(l), e, dead[l], cfg)
    return total
