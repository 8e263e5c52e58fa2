"""`saelab trace` end to end on a tiny random Llama (word-level tokenizer) with random transcoders in
circuit-tracer's format: the graph files the frontend reads (circuit-tracer's own pydantic schema validates
them), the named target as the one logit, the summary; a target of two tokens is refused naming the fix."""

from __future__ import annotations

import json

from saelab.cli import main
from tests.peer_modules import peer
from tests.trace import tiny


def test_saelab_trace_writes_the_frontend_files(tmp_path, capsys):
    peer("circuit_tracer")
    from circuit_tracer.frontend import graph_models as schema

    t = tiny.tiny_llama(tmp_path)
    folder = tiny.save_plts(tiny.random_plts(), tmp_path / "plt")
    out = tmp_path / "graphs"
    argv = ["trace", "w5 w9 w13 w17", "--transcoders", str(folder), "--model", str(t.path), "--out", str(out)]
    assert main([*argv, "--target", "w11", "--slug", "g"]) == 0
    doc = json.loads((out / "g.json").read_text())
    schema.Model.model_validate(doc)
    assert json.loads((out / "graph-metadata.json").read_text())["graphs"] == [doc["metadata"]]
    assert doc["metadata"]["prompt_tokens"] == ["<s>", "w5", "w9", "w13", "w17"]
    logits = [n for n in doc["nodes"] if n["feature_type"] == "logit"]
    assert [(n["feature"], n["is_target_logit"], n["node_id"]) for n in logits] == [(11, True, "3_11_4")]
    assert [n["node_id"] for n in doc["nodes"] if n["feature_type"] == "embedding"] == [
        "E_1_0", "E_5_1", "E_9_2", "E_13_3", "E_17_4"
    ]  # fmt: skip
    summary = json.loads((out / "g.summary.json").read_text())
    assert 0 < summary["replacement_score"] <= 1 and 0 < summary["completeness_score"] <= 1
    assert summary["kept_nodes"] <= summary["n_nodes"] and "replacement score" in capsys.readouterr().out
    assert summary["page"] == str(out / "graph-g.html") and (out / "data" / "graph-g.js").is_file()

    assert main([*argv, "--target", "w11 w12"]) == 2
    assert "--target 'w11 w12' is 2 tokens" in capsys.readouterr().err
