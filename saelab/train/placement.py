"""The step-0 train state of an SAE, placed on the mesh: what `saelab train plan` sizes and every run starts from."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from saelab.runtime.distributed import put
from saelab.sae import CLTConfig, SAEConfig, get_architecture, init_params
from saelab.sae import clt as clt_sae
from saelab.train.config import TrainConfig
from saelab.train.mesh import param_shardings
from saelab.train.state import TrainState, init_state, make_optimizer


def initial_state(
    sae: SAEConfig, cfg: TrainConfig, mesh: Mesh, b_dec: jax.Array | None = None
) -> tuple[TrainState, optax.GradientTransformation]:
    """The step-0 train state on `mesh` and its optimiser: parameters sharded by PARAM_SPECS, Adam moments
    like them, latent bookkeeping over `model`, the rest replicated (`saelab train plan` sizes exactly this).
    A CLT's b_dec is (L, d_out); its parameters are CLTParams, sharded by `clt_param_specs`."""
    unit_norm = cfg.train.unit_norm_decoder
    if unit_norm is None:
        unit_norm = default_unit_norm(sae)
    key = jax.random.key(cfg.train.seed)
    if isinstance(sae, CLTConfig):
        params = clt_sae.init_params(key, sae)
        params = params if b_dec is None else params._replace(b_dec=jnp.asarray(b_dec, jnp.float32))
    else:
        params = init_params(key, sae, b_dec=b_dec)
    params = put(params, param_shardings(mesh, params))
    tx = make_optimizer(cfg.optim, cfg.steps, unit_norm, clt=isinstance(sae, CLTConfig))
    return place(init_state(params, tx, key), mesh), tx


def default_unit_norm(sae: SAEConfig) -> bool:
    """train.unit_norm_decoder when unset: the architecture's registry default; for a CLT, its activation's
    (on for TopK, whose codes are only comparable over unit decoder rows; off for JumpReLU)."""
    if isinstance(sae, CLTConfig):
        return get_architecture(sae.activation).unit_norm_decoder
    return get_architecture(sae.architecture).unit_norm_decoder


def place(state: TrainState, mesh: Mesh) -> TrainState:
    """Shard latent-sized bookkeeping over `model`; leaves not yet on the mesh (optimiser counts, scalars) are
    replicated; params and the moments made from them keep their shardings."""
    rep = NamedSharding(mesh, P())
    lat = NamedSharding(mesh, P("model"))
    on_mesh = lambda a: a if isinstance(a.sharding, NamedSharding) and a.sharding.mesh == mesh else put(a, rep)
    state = jax.tree.map(on_mesh, state)
    return state._replace(since_fired=put(state.since_fired, lat), window_counts=put(state.window_counts, lat))
