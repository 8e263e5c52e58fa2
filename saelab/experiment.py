"""`saelab run EXPERIMENT.toml`: run stages in order, skipping a stage whose outputs exist and match its config.

An experiment file holds an `[experiment]` table (`name`, `description`) and `[[stages]]` tables. Each
stage has a `kind` (a key of `STAGES`) and that kind's config fields (nested tables for `train`). Optional
per-stage keys:

- `id`: the stage's name in the log and its marker (default `kind`, with sweep values appended);
- `sweep`: a table of equal-length lists (`layer = [2, 6, 10, 14]`), expanding the stage into one stage per
  position; every string of the stage is formatted with the sweep values (`"blocks.{layer}.hook_resid_post"`; a
  string that is only a placeholder, `"{k}"`, takes the value itself, number or string);
- `quick`: dotted-key overrides used by `--quick` (`"train.tokens" = 200_000`).

Every string is also formatted with `{name}`: the experiment's name, or `<name>-quick` under `--quick`, so a
quick run never touches the full run's outputs, and with `{data}`: the folder of text data shipped with saelab
(`saelab/data/texts`, e.g. `"jsonl:{data}/clinc150/train.jsonl:text"`). A finished stage writes a marker with
its config to `results/<name>/stages/<id>.json`; on the next run the stage is skipped when the marker matches
and its output exists, resumed when its output exists without a marker (an interrupted stage), and redone (its
old outputs replaced, with a message) when the marker shows another config. Every stage that does not run says
so and why: up to date, left out by `--only`, or declined by the stage itself (an eval with `skip_missing`
whose corpus file is absent), which writes no marker, so the stage runs once its input is there.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from saelab.atoms.config import AtomsConfig, AtomsPaperConfig
from saelab.atoms.paper import run as run_atoms_paper
from saelab.atoms.run import run as run_atoms
from saelab.circuits.config import CircuitsConfig
from saelab.circuits.run import run as run_circuits
from saelab.data.texts import TEXTS
from saelab.evals import run as run_eval
from saelab.evals import saebench
from saelab.evals.autointerp import AutointerpConfig, run_autointerp
from saelab.evals.config import EvalConfig, PlotConfig
from saelab.evals.plots import run as run_plot
from saelab.evals.saebench import table as saebench_table
from saelab.harvest import run as run_harvest
from saelab.harvest.config import HarvestConfig
from saelab.inspect import run as run_inspect
from saelab.inspect.config import InspectConfig
from saelab.peers.saelens import SAELensTrainConfig
from saelab.peers.saelens import run as run_saelens
from saelab.runtime.config import explain_errors
from saelab.runtime.rundir import RunDir
from saelab.select.bench import run_bench
from saelab.select.config import BenchConfig, ChatCorpusConfig, DownstreamConfig, SelectConfig
from saelab.select.corpus import write_chat_corpus
from saelab.select.downstream import run_downstream
from saelab.select.run import run as run_select
from saelab.synth.config import SynthScoreConfig, SynthWorldConfig
from saelab.synth.report import run as run_synth_score
from saelab.synth.run import run as run_synth_world
from saelab.train import run as run_train
from saelab.train.config import TrainConfig
from saelab.train.multi import run as run_train_multi
from saelab.train.multi.config import MultiTrainConfig

RESULTS = Path("results")


@dataclass(frozen=True)
class StageKind:
    config: type[BaseModel]  # the stage's config class
    run: Callable[[Any, bool], Any]  # (config, redo) -> result
    output: Callable[[Any], Path]  # where the stage writes (exists once it has started)


def _train(cfg: TrainConfig, redo: bool) -> Any:
    return run_train(cfg, resume=RunDir(cfg.run_dir).is_run() and not redo, overwrite=redo)


def _train_multi(cfg: MultiTrainConfig, redo: bool) -> Any:
    return run_train_multi(cfg, resume=RunDir(cfg.run_dir).is_multi() and not redo, overwrite=redo)


def _plain(fn: Callable[[Any], Any]) -> Callable[[BaseModel, bool], Any]:
    """Stages whose run takes just the config; a redo sets their `overwrite` field when they have one."""

    def run(cfg: BaseModel, redo: bool) -> Any:
        if redo and "overwrite" in type(cfg).model_fields:
            cfg = cfg.model_copy(update={"overwrite": True})
        return fn(cfg)

    return run


# Stages whose run takes just the config and writes to `cfg.out`: kind -> (config class, run function).
_PLAIN_STAGES: dict[str, tuple[type[BaseModel], Callable[[Any], Any]]] = {
    "harvest": (HarvestConfig, run_harvest),
    "eval": (EvalConfig, run_eval),
    "plot": (PlotConfig, run_plot),
    "saebench-table": (saebench_table.TableConfig, saebench_table.run),
    "saelens-train": (SAELensTrainConfig, run_saelens),
    "inspect": (InspectConfig, run_inspect),
    "atoms": (AtomsConfig, run_atoms),
    "atoms-paper": (AtomsPaperConfig, run_atoms_paper),
    "circuits": (CircuitsConfig, run_circuits),
    "select-bench": (BenchConfig, run_bench),
    "select-downstream": (DownstreamConfig, run_downstream),
    "select": (SelectConfig, run_select),
    "select-corpus": (ChatCorpusConfig, write_chat_corpus),
    "synth-world": (SynthWorldConfig, run_synth_world),
    "synth-score": (SynthScoreConfig, run_synth_score),
}

STAGES: dict[str, StageKind] = {
    "train": StageKind(TrainConfig, _train, lambda c: c.run_dir),
    "train-multi": StageKind(MultiTrainConfig, _train_multi, lambda c: c.run_dir),
    "autointerp": StageKind(AutointerpConfig, _plain(run_autointerp), lambda c: c.out_path()),
    "saebench": StageKind(EvalConfig, _plain(saebench.run), lambda c: c.out or saebench.default_out(c)),
    **{kind: StageKind(config, _plain(fn), lambda c: c.out) for kind, (config, fn) in _PLAIN_STAGES.items()},
}


@dataclass(frozen=True)
class Stage:
    id: str
    kind: str
    config: BaseModel
    group: str  # the [[stages]] table's id: a swept stage's positions share it


def _named(stage: Stage, only: list[str]) -> bool:
    return bool({stage.id, stage.group, stage.kind} & set(only))


def load(path: str | Path, quick: bool = False) -> tuple[str, list[Stage]]:
    """Parse and validate every stage of an experiment file before anything runs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"experiment file {path} does not exist (see experiments/*.toml)")
    raw = tomllib.loads(path.read_text())
    unknown = set(raw) - {"experiment", "stages"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level tables {sorted(unknown)}; expected [experiment] and [[stages]]")
    name = raw.get("experiment", {}).get("name", path.stem) + ("-quick" if quick else "")
    stages: list[Stage] = []
    for i, table in enumerate(raw.get("stages", [])):
        for group, sid, kind, fields in _expand(table, i, quick, name, path):
            cls = _config_class(kind, path)
            try:
                stages.append(Stage(sid, kind, cls(**fields), group))
            except ValidationError as e:
                why = explain_errors(e, cls)
                raise ValueError(f"{path}: stage {sid!r} ({kind}) has an invalid config:\n{why}") from None
    if not stages:
        raise ValueError(f"{path} has no [[stages]]")
    ids = [s.id for s in stages]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: stage ids repeat ({ids}); give stages distinct `id`s")
    return name, stages


def run(path: str | Path, quick: bool = False, only: list[str] | None = None, log=print) -> list[tuple[Stage, Any]]:
    """Run the experiment's stages in order; returns (stage, result or 'skipped') per stage."""
    name, stages = load(path, quick)
    unknown = set(only or []) - {n for s in stages for n in (s.id, s.group, s.kind)}
    if unknown:
        known = sorted({n for s in stages for n in (s.group, s.kind)})
        raise ValueError(f"--only {sorted(unknown)} names no stage of {path}; stage ids and kinds: {known}")
    marks = RESULTS / name / "stages"
    out = []
    for stage in stages:
        if only and not _named(stage, only):
            log(f"[{stage.id}] not named by --only; skipped")
            continue
        kind = STAGES[stage.kind]
        config = stage.config.model_dump(mode="json")
        mark = marks / f"{stage.id}.json"
        previous = json.loads(mark.read_text()) if mark.exists() else None
        output = kind.output(stage.config)
        if previous is not None and previous["config"] == config and output.exists():
            log(f"[{stage.id}] up to date ({output}); skipped")
            out.append((stage, "skipped"))
            continue
        redo = previous is not None and output.exists()
        if redo:
            log(f"[{stage.id}] config changed since the last run: redoing it and replacing {output}")
        elif output.exists():
            log(f"[{stage.id}] resuming the interrupted stage in {output}")
        else:
            log(f"[{stage.id}] {stage.kind} -> {output}")
        t0 = time.perf_counter()
        result = kind.run(stage.config, redo)
        seconds = time.perf_counter() - t0
        if not output.exists():  # it declined to run (an eval whose skip_missing corpus is absent): no marker
            log(f"[{stage.id}] skipped: it wrote no {output} (the reason is printed above)")
            out.append((stage, "skipped"))
            continue
        marks.mkdir(parents=True, exist_ok=True)
        tmp = mark.with_suffix(".tmp")
        tmp.write_text(json.dumps({"kind": stage.kind, "config": config, "seconds": round(seconds, 1)}, indent=2))
        tmp.replace(mark)
        log(f"[{stage.id}] done in {seconds:.0f} s")
        out.append((stage, result))
    return out


def _config_class(kind: str, path: Path) -> type[BaseModel]:
    if kind not in STAGES:
        raise ValueError(f"{path}: unknown stage kind {kind!r}; known kinds: {sorted(STAGES)}")
    return STAGES[kind].config


def _expand(table: dict, index: int, quick: bool, name: str, path: Path):
    """(table id, id, kind, fields) for each sweep position of one [[stages]] table."""
    table = dict(table)
    kind = table.pop("kind", None)
    if kind is None:
        raise ValueError(f"{path}: stage {index} has no `kind`")
    sweep = table.pop("sweep", {})
    overrides = table.pop("quick", {}) if quick else {}
    table.pop("quick", None)
    sid = table.pop("id", kind)
    lengths = {len(v) for v in sweep.values()}
    if len(lengths) > 1 or any(not isinstance(v, list) for v in sweep.values()):
        raise ValueError(f"{path}: stage {sid!r}: every `sweep` entry must be a list, all of one length")
    positions = [dict(zip(sweep, vals, strict=True)) for vals in zip(*sweep.values(), strict=True)] if sweep else [{}]
    for key, value in overrides.items():
        _set(table, key, value)
    for values in positions:
        fmt = {"name": name, "data": str(TEXTS), **values}
        suffix = "".join(f"-{k}{v}" for k, v in values.items())
        yield sid, f"{sid}{suffix}", kind, _format(table, fmt)


def _set(table: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        table = table.setdefault(p, {})
    table[last] = value


def _format(value: Any, fmt: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = value[1:-1] if value.startswith("{") and value.endswith("}") else None
        if whole in fmt:  # "{k}" alone keeps the sweep value's type
            return fmt[whole]
        try:
            return value.format(**fmt)
        except KeyError as e:
            raise ValueError(
                f"placeholder {{{e.args[0]}}} in {value!r} is neither `name`, `data` nor a sweep key"
            ) from None
    if isinstance(value, dict):
        return {k: _format(v, fmt) for k, v in value.items()}
    if isinstance(value, list):
        return [_format(v, fmt) for v in value]
    return value
