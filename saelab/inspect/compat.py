"""Open an SAE with the store it is inspected on, and refuse pairs that do not belong together."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from saelab.models.aliases import hf_id
from saelab.runtime.config import did_you_mean
from saelab.sae import LoadedSAE, load_sae
from saelab.store import ActivationStore


class Inputs(NamedTuple):
    sae: LoadedSAE
    store: ActivationStore
    hook: str
    model_name: str  # what Model.load gets for tokens and the logit lens


def open_inputs(
    sae_path: str | Path, store_path: str | Path, hook: str | None = None, model: str | None = None
) -> Inputs:
    """The SAE, the store and the hook to read, after checking that the store holds what the SAE encodes.

    Errors (ValueError / FileNotFoundError) name both sides: a store of another model (by name or weights
    hash), a hook the store lacks, a width that is not the SAE's d_in, missing files.
    """
    sae = load_sae(sae_path)
    if not Path(store_path).exists():
        raise FileNotFoundError(f"store {store_path} does not exist; harvest one with `saelab harvest`")
    store = ActivationStore(store_path)
    meta = sae.metadata
    hook = hook or meta.get("hook_name")
    if hook is None:
        if len(store.hooks) != 1:
            raise ValueError(f"SAE {sae_path} names no hook and store {store_path} holds {store.hooks}; pass --hook")
        hook = store.hooks[0]
    if hook not in store.hooks:
        raise ValueError(
            f"SAE {sae_path} reads {hook!r} but store {store_path} holds only {store.hooks}"
            f"{did_you_mean(hook, store.hooks)}; "
            "harvest that hook or pass --hook"
        )
    if store.d_model != sae.cfg.d_in:
        raise ValueError(
            f"store {store_path} has d_model {store.d_model} but SAE {sae_path} has d_in "
            f"{sae.cfg.d_in}: they come from different models or hook points"
        )
    store_model = store.meta.get("model")
    sae_model = meta.get("model_name")
    if sae_model and store_model and hf_id(sae_model) != hf_id(store_model):  # gpt2-small is gpt2
        raise ValueError(
            f"store {store_path} was harvested from model {store_model!r} but SAE {sae_path} was "
            f"trained on {sae_model!r}; inspect it on a store of its own model"
        )
    sae_hash, store_hash = meta.get("weights_hash"), store.meta.get("weights_hash")
    if sae_hash and store_hash and sae_hash != store_hash:
        raise ValueError(
            f"store {store_path} comes from weights {store_hash} but SAE {sae_path} from weights "
            f"{sae_hash} (same name {store_model!r}, other weights); re-harvest with the SAE's model"
        )
    name = model or store_model or sae_model
    if not name:
        raise ValueError(f"neither store {store_path} nor SAE {sae_path} names its model; pass --model")
    return Inputs(sae, store, hook, name)
