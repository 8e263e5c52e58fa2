"""saelab.sae: five SAE architectures as pure functions over one parameter pytree, CLTs, and their machinery.

- One config class per architecture (`ReLUConfig`, `TopKConfig`, `BatchTopKConfig`, `JumpReLUConfig`,
  `MatryoshkaConfig`), each with only the fields it reads, over the shared `SAEConfig` (config.py);
  `sae_config({"architecture": ..., ...})` validates a dict by the architecture it names. `SAEParams`
  (params.py) holds W_enc, b_enc, W_dec, b_dec and an optional float32 threshold, with SAELens names.
- Architectures (relu.py, topk.py, batchtopk.py, jumprelu.py, matryoshka.py) each define their config class,
  `encode(params, x, cfg)`, `decode(params, codes)` and `loss(params, x, cfg, aux, y) -> (loss, LossOutput)`;
  an `Architecture` entry (registry.py) holds them with every per-architecture fact, `register` adds one,
  `ARCHITECTURES` / `get_architecture` look them up by name, and `loss(params, x, cfg, aux_state, target)`
  resolves the arguments every loss shares.
- init.py (tied init, geometric-median b_dec), decoder_norm.py (unit-norm decoder, optax transforms),
  scaling.py (input scaling and folding it into the parameters), sparse.py (custom-VJP TopK kernels),
  codes.py ((values, indices) codes), auxk.py (OpenAI's AuxK loss over the dead latents).
- Cross-layer transcoders (clt.py, clt_kernels.py; architecture "clt"): `CLTConfig`, `CLTParams` (an encoder
  per layer, decoders from each layer to every later one), x and targets (batch, L, d), their own loss
  (`Architecture.own_loss`); formats/circuit_tracer.py writes and reads circuit-tracer's format.
- Loading published SAEs: `load_sae(PATH)` reads any format of formats/ (SAELens, Gemma Scope, Llama Scope,
  sparsify) into a `LoadedSAE` (loaded.py); `load_pretrained(release, sae_id)` fetches one of releases.py.
"""

from saelab.sae.affine import decode, pre_activations
from saelab.sae.batchtopk import BatchTopKConfig
from saelab.sae.clt import CLTConfig, CLTParams
from saelab.sae.codes import TopK
from saelab.sae.config import ArchitectureName, AuxKConfig, SAEConfig, TranscoderConfig
from saelab.sae.decoder_norm import (
    normalise_decoder,
    normalise_decoder_transform,
    remove_parallel_grad,
    remove_parallel_grad_transform,
    unit_norm_decoder,
)
from saelab.sae.init import geometric_median, init_params
from saelab.sae.jumprelu import JumpReLUConfig
from saelab.sae.loaded import InputNorm, LoadedSAE
from saelab.sae.losses import AuxState, LossOutput, init_aux_state
from saelab.sae.matryoshka import MatryoshkaConfig
from saelab.sae.params import SAEParams, check_finite, check_params
from saelab.sae.registry import (
    ARCHITECTURES,
    Architecture,
    architecture,
    encode,
    forward,
    get_architecture,
    loss,
    register,
    sae_config,
    unregister,
)
from saelab.sae.releases import load_pretrained
from saelab.sae.relu import ReLUConfig
from saelab.sae.saelens_io import load_sae, load_saelens, save_saelens
from saelab.sae.scaling import fold_input_scaling, input_scale
from saelab.sae.sparse import dense_decode, dense_topk_encode, sparse_decode, topk_encode
from saelab.sae.topk import TopKConfig

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ArchitectureName",
    "AuxKConfig",
    "AuxState",
    "CLTConfig",
    "CLTParams",
    "BatchTopKConfig",
    "InputNorm",
    "JumpReLUConfig",
    "LoadedSAE",
    "load_pretrained",
    "load_sae",
    "load_saelens",
    "save_saelens",
    "LossOutput",
    "MatryoshkaConfig",
    "ReLUConfig",
    "SAEConfig",
    "SAEParams",
    "TopK",
    "TopKConfig",
    "TranscoderConfig",
    "architecture",
    "check_finite",
    "check_params",
    "decode",
    "dense_decode",
    "dense_topk_encode",
    "encode",
    "fold_input_scaling",
    "forward",
    "geometric_median",
    "get_architecture",
    "init_aux_state",
    "init_params",
    "input_scale",
    "loss",
    "normalise_decoder",
    "normalise_decoder_transform",
    "pre_activations",
    "register",
    "remove_parallel_grad",
    "remove_parallel_grad_transform",
    "sae_config",
    "sparse_decode",
    "topk_encode",
    "unit_norm_decoder",
    "unregister",
]
