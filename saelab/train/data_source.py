"""The [data] section of a training run: a harvested store (`StoreData`) or the model run on the fly
(`ModelData`), picked by `source` (store unless "model"); each reads only its own fields, so a field of the other
source is an error naming the source that reads it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from saelab.harvest.config import HarvestConfig
from saelab.runtime.config import Config

__all__ = ["DataConfig", "StoreData", "ModelData", "DataSource", "data_config"]


def _harvest_field(name: str):
    """HarvestConfig's field `name` (type bounds, default and docstring), reused by the on-the-fly source."""
    return copy.copy(HarvestConfig.model_fields[name])


class DataConfig(Config):
    """What both data sources read; the base of StoreData and ModelData, one of which is a run's [data]."""

    source: str
    """Where batches come from: "store", a harvested store (globally shuffled), or "model", the model itself
    run on the corpus as training goes, through a shuffle buffer of `buffer_batches` batches (no store on disk)."""
    hook: str | None = None
    """Hook point to train on; None means the store's only hook."""
    target_hook: str | None = None
    """Train a transcoder: reconstruct this hook (of the same store, or of the same forward on the fly; e.g.
    blocks.L.hook_mlp_out) from `hook` (e.g. blocks.L.ln2.hook_normalized); None trains an ordinary SAE. Each hook
    is scaled by its own statistics."""
    batch_size: int = Field(default=4096, ge=1)
    """Tokens per step (global batch across all devices and processes)."""
    include_bos: bool = False
    """Train on BOS positions too (their norms are huge; excluded by default)."""
    seed: int = 0
    """Seed of the global shuffle (source "store") or of the shuffle buffer (source "model")."""

    @model_validator(mode="before")
    @classmethod
    def _only_own_fields(cls, data: Any) -> Any:
        """Another source's field set to other than its default is an error naming the source that reads it
        (at its default it is dropped: a config written with every field of both sources still loads)."""
        if not isinstance(data, dict) or cls is DataConfig:
            return data
        other = ModelData if cls is StoreData else StoreData
        foreign = [k for k in data if k not in cls.model_fields and k in other.model_fields]
        given = [k for k in foreign if str(data[k]) != str(other.model_fields[k].default)]
        if given and cls is StoreData:
            raise ValueError(f"data.{', data.'.join(given)} apply to data.source='model'; set it or remove them")
        if given:
            raise ValueError("data.store is not read with data.source='model'; remove it or use source='store'")
        return {k: v for k, v in data.items() if k not in foreign}


class StoreData(DataConfig):
    """Batches from a harvested activation store, globally shuffled."""

    source: Literal["store"] = "store"
    store: Path = Path("activations/demo")
    """Activation store directory made by `saelab harvest`."""


class ModelData(DataConfig):
    """Batches from the model run on the corpus as training goes (no store on disk)."""

    source: Literal["model"] = "model"
    model: str = _harvest_field("model")
    corpus: str = _harvest_field("corpus")
    split: Literal["all", "train", "heldout"] = _harvest_field("split")
    context: int = _harvest_field("context")
    model_batch: int = _harvest_field("batch")
    model_dtype: Literal["float32", "bfloat16"] = _harvest_field("model_dtype")
    within_document: bool = _harvest_field("within_document")
    buffer_batches: int = Field(default=16, ge=1)
    """Training batches held in the device-side shuffle buffer; each fill is shuffled as a whole and drained
    before the next (1 = no mixing across batches)."""

    @model_validator(mode="after")
    def _check_model_source(self) -> ModelData:
        if self.hook is None:
            raise ValueError("data.source='model' needs data.hook, e.g. data.hook='blocks.3.hook_resid_post'")
        if self.include_bos:
            raise ValueError("data.include_bos is for stores; on the fly, BOS positions are always left out")
        return self


def data_config(data: Any) -> Any:
    """A [data] table as the class of the source it names (StoreData unless source = "model"); other values
    are left to pydantic."""
    if not isinstance(data, dict):
        return data
    source = data.get("source", "store")
    if source not in ("store", "model"):
        raise ValueError(f"data.source must be 'store' or 'model', got {source!r}")
    return (ModelData if source == "model" else StoreData)(**data)


DataSource = Annotated[StoreData | ModelData, BeforeValidator(data_config)]
