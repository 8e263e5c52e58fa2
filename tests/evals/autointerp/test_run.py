"""run_autointerp end to end on a synthetic store (SmolLM2 token ids, random activations) and a random TopK
SAE, with a fixed-reply judge and the keyword embedder: autointerp.json beside the SAE with every latent
scored against another latent's explanation, its copy in the SAE's dashboard report (written by autointerp,
and picked up by `saelab inspect`), the latent page showing the explanation and its scores in headless
Chromium, and the explanations `saelab explain` reads. Random SAEs check the plumbing, never what a latent
means: the judge answers 1 to everything, so every classifier score is exactly 0.5."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from saelab.evals.autointerp import AutointerpConfig, run_autointerp
from saelab.inspect import InspectConfig
from saelab.inspect import run as inspect_run
from saelab.inspect.autointerp import explanations, find_autointerp

from ...inspect.inspect_helpers import write_sae, write_store
from .fakes import bag_of_words

SHOTS = Path(os.environ.get("SAELAB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "saelab-inspect-screenshots")


class YesJudge:
    """Explains each latent by the first marked text of its first example; labels every example 1."""

    name = "fake:yes"

    def __init__(self) -> None:
        self.explainer_inputs: list[str] = []

    def complete(self, chats, max_tokens):
        out = []
        for chat in chats:
            last = chat[-1]["content"]
            if last.startswith("Latent explanation:"):
                out.append("[" + ",".join("1" * len(re.findall(r"^Example \d+: ", last, re.MULTILINE))) + "]")
            else:
                self.explainer_inputs.append(last)
                out.append(f"[EXPLANATION]: marked {last.split('<<', 1)[1].split('>>', 1)[0]!r} {len(out)}")
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("autointerp")
    store = write_store(root / "store", model="smollm2-135m")
    meta = {"model_name": "smollm2-135m", "hook_name": "blocks.0.hook_resid_post", "weights_hash": "abc"}
    sae = write_sae(root / "sae", d_sae=48, k=4, meta=meta)
    report = root / "report"
    inspect_run(InspectConfig(sae=sae, store=store, out=report, batch_windows=8, top_k=6), progress=False)
    judge = YesJudge()
    cfg = AutointerpConfig(sae=sae, store=store, report=report, n_latents=3, n_explain=4, n_test=4, n_shown=4,
                           left=3, right=1, tokens=640)  # fmt: skip
    result = run_autointerp(cfg, judge=judge, embedder=bag_of_words, progress=False)
    return {"root": root, "store": store, "sae": sae, "report": report, "result": result, "judge": judge}


def test_results_beside_the_sae_with_controls(world) -> None:
    data = find_autointerp(world["sae"])
    assert data is not None and data["judge"] == "fake:yes" and len(data["latents"]) == 3
    latents = {int(k) for k in data["latents"]}
    for k, rec in data["latents"].items():
        assert rec["control_from"] in latents and rec["control_from"] != int(k)
        assert rec["control_explanation"] == data["latents"][str(rec["control_from"])]["explanation"]
        assert set(rec["scores"]) == {"detection", "fuzzing", "embedding"}
        for name, s in rec["scores"].items():
            assert s["n"] == 8 and s["answered"] == s["control_answered"] == 1.0, name
            assert s["score"] == s["control"] == 0.5, name  # all-1 answers, and all-zero keyword embeddings
    assert data["summary"]["detection"] == {"score": 0.5, "control": 0.5, "above_control": 0.0}
    assert explanations(data) == {int(k): v["explanation"] for k, v in data["latents"].items()}
    for shown in world["judge"].explainer_inputs:  # the explainer sees n_explain highlighted top contexts
        assert shown.count("\nExample ") == 3 and shown.count("<<") >= 4


def test_report_gets_the_results_and_inspect_picks_them_up(world, tmp_path) -> None:
    text = (world["report"] / "data" / "autointerp.js").read_text()
    assert text.startswith('saelabData("autointerp",')
    assert json.loads(text[text.index(",") + 1 : text.rindex(")")]) == find_autointerp(world["sae"])
    again = tmp_path / "r2"  # a report built after autointerp ran shows its results too
    inspect_run(
        InspectConfig(sae=world["sae"], store=world["store"], out=again, batch_windows=8, top_k=2, aip=False),
        progress=False,
    )
    assert (again / "data" / "autointerp.js").read_text() == text


def test_latent_page_shows_explanation_and_scores(world) -> None:
    from .browser import open_page

    data = find_autointerp(world["sae"])
    latent, rec = next(iter(data["latents"].items()))
    with open_page(world["report"], f"latent.html?i={latent}", SHOTS / "autointerp_latent.png") as driver:
        from selenium.webdriver.common.by import By

        section = driver.find_element(By.ID, "autointerp")
        assert section.is_displayed()
        assert rec["explanation"] in section.find_element(By.CLASS_NAME, "explanation").text
        rows = [r.text for r in section.find_elements(By.CSS_SELECTOR, ".scores tr")][1:]
        assert [r.split()[0] for r in rows] == ["detection", "fuzzing", "embedding"]
        assert all("0.5 0.5 8" in r for r in rows)
        assert f"latent {rec['control_from']}" in section.text


def test_suite_evaluator(world, tmp_path) -> None:
    """`saelab eval --suite autointerp`'s evaluator: the registry entry, its metrics and markdown section."""
    from types import SimpleNamespace

    from saelab.evals.autointerp import suite
    from saelab.evals.saebench.registry import EVALUATORS

    assert EVALUATORS["autointerp"].evaluate is suite.evaluate
    sae = shutil.copytree(world["sae"], tmp_path / "sae")  # its own autointerp.json, not the fixture's
    cfg = SimpleNamespace(sae=sae, suite_store=world["store"])
    ctx = SimpleNamespace(cfg=cfg, hook="blocks.0.hook_resid_post", model_name="smollm2-135m", quick=True)
    metrics = suite.evaluate(ctx, judge=YesJudge(), embedder=bag_of_words)
    assert metrics["variant"] == "quick" and len(metrics["latents"]) == suite.QUICK["n_latents"]
    assert metrics["summary"]["fuzzing"]["score"] == 0.5 and metrics["result"].endswith("autointerp.json")
    text = suite.markdown(metrics)
    assert "| detection | 0.500 | 0.500 | 0% |" in text
    for k, v in metrics["latents"].items():
        assert f"| {k} | {v['explanation'].replace('|', chr(92) + '|')} | 0.500 (0.500) |" in text


def test_bad_inputs_name_the_fix(world, tmp_path) -> None:
    from saelab.inspect.autointerp import attach, read_autointerp

    base = {"sae": world["sae"], "store": world["store"], "out": tmp_path / "a.json", "left": 3, "right": 1}
    with pytest.raises(ValueError, match=r"outside \[0, 48\)"):
        run_autointerp(AutointerpConfig(**base, latents=[1, 99]), judge=YesJudge(), progress=False)
    with pytest.raises(ValueError, match="scan more"):
        run_autointerp(AutointerpConfig(**base, n_test=400), judge=YesJudge(), progress=False)
    with pytest.raises(ValueError, match="at least 2 distinct latents"):
        AutointerpConfig(sae=world["sae"], latents=[3, 3])
    with pytest.raises(ValueError, match="names no activation store"):
        AutointerpConfig(sae=tmp_path).store_path()
    with pytest.raises(ValueError, match="not a saelab report"):
        attach(tmp_path, {"version": 1, "latents": {}})
    (tmp_path / "old.json").write_text('{"latents": {}}')
    with pytest.raises(ValueError, match="rerun `saelab autointerp`"):
        read_autointerp(tmp_path / "old.json")
