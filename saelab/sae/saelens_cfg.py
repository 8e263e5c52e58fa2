"""The SAELens read-outs a LoadedSAE's `cfg` carries (saelab.sae.loaded): `cfg.metadata` as SAELens's
SAEMetadata reads, `cfg.normalize_activations`, and `cfg.architecture` that, called as SAELens calls it,
returns SAELens's name for the architecture."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from saelab.sae.config import SAEConfig
from saelab.sae.registry import get_architecture

__all__ = ["SAELensMetadata", "CallableArchitectureName", "saelens_cfg"]


class SAELensMetadata(Mapping[str, Any]):
    """Read-only view of a LoadedSAE's metadata dict that reads as SAELens's SAEMetadata: attributes and items,
    a missing key reading None (`meta.hook_name`, `meta["context_size"]`), `in` only for keys present."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._data.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a LoadedSAE's cfg.metadata is read-only; use sae._replace(metadata={...})")

    def __getitem__(self, key: str) -> Any:
        return self._data.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SAELensMetadata, (dict(self._data),))

    def __repr__(self) -> str:
        return f"SAELensMetadata({dict(self._data)!r})"


class CallableArchitectureName(str):
    """saelab's architecture name (it compares, hashes and serialises as that string) that, called as SAELens
    calls `cfg.architecture()`, returns SAELens's name for it."""

    __slots__ = ("saelens",)

    def __new__(cls, name: str, saelens: str) -> CallableArchitectureName:
        new = super().__new__(cls, name)
        new.saelens = saelens
        return new

    def __call__(self) -> str:
        return self.saelens

    def __reduce__(self) -> tuple[Any, ...]:
        return (CallableArchitectureName, (str(self), self.saelens))


def saelens_cfg(cfg: SAEConfig, metadata: Mapping[str, Any], normalize_activations: str) -> SAEConfig:
    """A copy of cfg (equal to it, same hash and dump) carrying SAELens's `metadata`, `normalize_activations`
    and callable `architecture` as instance attributes outside the pydantic fields."""
    if not isinstance(cfg, SAEConfig):
        return cfg
    view = cfg.model_copy()
    name = str(cfg.architecture)
    view.__dict__["architecture"] = CallableArchitectureName(name, get_architecture(name).saelens_architecture(cfg))
    view.__dict__["metadata"] = SAELensMetadata(metadata)
    view.__dict__["normalize_activations"] = normalize_activations
    return view
