"""Training configs: the input scaling follows the architecture, fields an architecture ignores are refused,
and every training config in experiments/ validates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saelab import train
from saelab.sae import load_sae
from saelab.store import ActivationStore
from saelab.train.config import SAESection, TrainConfig, TrainSection

ROOT = Path(__file__).resolve().parents[2]
TOPK_TOML = ROOT / "experiments" / "sae-topk.toml"
HOOK = "blocks.3.hook_resid_post"  # the real_store fixture's hook (conftest.py)


def _switched_to_jumprelu(tmp_path: Path, keep_k: bool = False) -> Path:
    """experiments/sae-topk.toml with `architecture = "jumprelu"` (and its `k` line dropped unless keep_k)."""
    lines = TOPK_TOML.read_text().replace('architecture = "topk"', 'architecture = "jumprelu"').splitlines()
    f = tmp_path / "sae-jumprelu-from-topk.toml"
    f.write_text("\n".join(line for line in lines if keep_k or not line.startswith("k =")) + "\n")
    return f


def test_input_scaling_defaults_to_the_architectures(tmp_path) -> None:
    assert train.load_config(TOPK_TOML).train.input_scaling == "sqrt_d"
    assert train.load_config(_switched_to_jumprelu(tmp_path)).train.input_scaling == "unit"
    given = train.load_config(_switched_to_jumprelu(tmp_path), ["train.input_scaling='sqrt_d'"])
    assert given.train.input_scaling == "sqrt_d"  # a value the user set is kept
    built = TrainConfig(sae=SAESection(architecture="jumprelu"), train=TrainSection(name="x"))
    assert built.train.input_scaling == "unit" and built.train.name == "x"
    given = TrainConfig(sae=SAESection(architecture="jumprelu"), train=TrainSection(input_scaling="none"))
    assert given.train.input_scaling == "none"
    resumed = TrainConfig(**built.model_dump(mode="json"))  # config.json of a run round-trips
    assert resumed == built


def test_fields_the_architecture_ignores_are_errors_before_any_store_is_opened(tmp_path) -> None:
    with pytest.raises(
        ValueError, match=r"k does not apply to jumprelu SAEs \(k applies to batchtopk, clt, matryoshka, topk\)"
    ):
        train.load_config(_switched_to_jumprelu(tmp_path, keep_k=True))
    with pytest.raises(
        ValueError, match=r"l0_coefficient does not apply to topk SAEs \(l0_coefficient applies to clt, jumprelu\)"
    ):
        train.load_config(TOPK_TOML, ["sae.l0_coefficient=1e-3"])
    with pytest.raises(ValueError, match="coefficient_warmup_steps warms up an L1 / L0 coefficient, which topk SAEs"):
        train.load_config(TOPK_TOML, ["optim.coefficient_warmup_steps=10"])
    assert train.load_config(TOPK_TOML, ["optim.coefficient_warmup_steps=0"]).optim.coefficient_warmup_steps == 0
    with pytest.raises(ValueError, match="unknown SAE architecture 'gated'"):
        train.load_config(TOPK_TOML, ["sae.architecture='gated'"])


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("sae-*.toml")), ids=lambda p: p.name)
def test_experiment_training_configs_validate(path: Path) -> None:
    cfg = train.load_config(path)
    assert cfg.train.input_scaling == ("unit" if cfg.sae.model_extra["architecture"] == "jumprelu" else "sqrt_d")


def test_switched_topk_config_trains_jumprelu_at_unit_scale(real_store, tmp_path) -> None:
    sets = [
        f"data.store='{real_store}'",
        "data.batch_size=512",
        "sae.expansion=2",
        "train.tokens=5120",
        "train.wandb='disabled'",
        "train.progress=false",
        f"train.out='{tmp_path}'",
    ]
    r = train.run(train.load_config(_switched_to_jumprelu(tmp_path), sets))
    stats = ActivationStore(real_store).stats(HOOK)
    want = np.sqrt(1.0 / stats["mean_sq_norm_no_bos"])  # mean squared norm 1 after scaling
    assert load_sae(r.run_dir).metadata["input_scale_folded"] == pytest.approx(want, rel=1e-6)


def test_the_data_section_is_the_class_of_its_source() -> None:
    from saelab.train.data_source import ModelData, StoreData

    assert type(train.load_config(None, ["data.store='s'"]).data) is StoreData
    on_the_fly = train.load_config(None, ["data.source='model'", f"data.hook='{HOOK}'", "data.context=32"]).data
    assert type(on_the_fly) is ModelData and on_the_fly.context == 32 and not hasattr(on_the_fly, "store")
    assert "context" not in StoreData.model_fields and "store" not in ModelData.model_fields
    # a [data] table listing both sources' fields at their defaults (as a flat dump holds them) still loads
    flat = StoreData().model_dump() | {k: f.default for k, f in ModelData.model_fields.items() if k != "source"}
    assert TrainConfig(data=flat).data == StoreData()
    with pytest.raises(ValueError, match=r"data.context apply to data.source='model'"):
        TrainConfig(data=flat | {"context": 64})
    with pytest.raises(ValueError, match="data.source must be 'store' or 'model', got 'modle'"):
        train.load_config(None, ["data.source='modle'"])
