"""The attribution-graph page in headless Chromium (as tests/inspect/test_browser.py drives it), on a graph that
circuit-tracer itself computes and writes: its `attribute` on a tiny random Llama (2 blocks) with a random CLT,
then its own `create_graph_files` (pruned at 0.8 / 0.98). Every node and edge of the JSON is drawn, edges are
coloured by sign, hovering a feature shows its top tokens from its layer's dashboards, and clicking it opens
that feature's dashboard page. The dashboards are real `saelab inspect` sites of random SAEs over a synthetic
store, one per layer at `L{layer}/`. Screenshot: /tmp/graph_page.png."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from saelab.inspect.collect import collect
from saelab.inspect.graph_page import read_graph, write_graph_page
from saelab.inspect.site import Dashboards, read_top_tokens, write_site
from saelab.inspect.weights import nearest
from saelab.sae import load_sae
from saelab.store import ActivationStore
from tests.inspect.inspect_helpers import HOOK, write_sae, write_store
from tests.inspect.test_browser import _ready, browser  # noqa: F401 (the fixture)
from tests.peer_modules import peer

SHOT = Path("/tmp/graph_page.png")
LAYERS, D, VOCAB, D_SAE = 2, 32, 64, 24


def circuit_tracer_graph(out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """circuit-tracer's `attribute` and `create_graph_files` on a random Llama and CLT; the JSON's path."""
    peer("circuit_tracer")
    import huggingface_hub.constants
    import torch
    import transformers
    import yaml
    from tokenizers import Tokenizer, models, pre_tokenizers

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_ENABLE_HF_TRANSFER", False, raising=False)
    from circuit_tracer import attribute
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    from saelab.sae import sae_config
    from saelab.sae.clt import CLTParams
    from saelab.sae.formats import circuit_tracer as ct

    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        hidden_size=D, intermediate_size=48, num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=4,
        vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=False, initializer_range=0.2,
    )  # fmt: skip
    hf = transformers.AutoModelForCausalLM.from_config(hf_cfg).to(torch.float32).eval()
    tl_cfg = HookedTransformerConfig(
        n_layers=LAYERS, d_model=D, d_head=8, n_heads=4, d_mlp=48, d_vocab=VOCAB, n_ctx=64, act_fn="silu",
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8, rotary_base=10000.0,
        gated_mlp=True, final_rms=True, eps=hf_cfg.rms_norm_eps, original_architecture="LlamaForCausalLM",
        rotary_adjacent_pairs=False, dtype=torch.float32, model_name="tiny-llama", device="cpu",
    )  # fmt: skip
    r = np.random.default_rng(3)
    n = lambda *s: np.asarray(r.normal(size=s) * 0.3, np.float32)  # noqa: E731
    W_dec = tuple(n(D_SAE, LAYERS - l, D) for l in range(LAYERS))
    theta = np.asarray(r.uniform(0.0, 0.3, size=(LAYERS, D_SAE)), np.float32)
    p = CLTParams(n(LAYERS, D, D_SAE), n(LAYERS, D_SAE) * 0.2, W_dec, n(LAYERS, D), theta)
    cfg = sae_config(architecture="clt", n_layers=LAYERS, d_in=D, d_sae=D_SAE, activation="jumprelu")
    hooks = yaml.safe_load((ct.save_clt(out / "clt", p, cfg, model_name="tiny-llama") / "config.yaml").read_text())
    cpu, f32 = torch.device("cpu"), torch.float32
    clt = load_clt(str(out / "clt"), hooks["feature_input_hook"], hooks["feature_output_hook"], None, cpu, f32)
    model = TransformerLensReplacementModel(tl_cfg)
    weights = convert_llama_weights(hf, tl_cfg)
    model.load_and_process_state_dict(weights, fold_ln=False, center_writing_weights=False, center_unembed=False)
    model._configure_replacement_model(clt)
    words = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f" w{i}": i for i in range(3, VOCAB)}
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_next")
    model.tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokens = torch.from_numpy(r.integers(3, VOCAB, size=8))
    tokens[0] = 1
    graph = attribute(tokens, model, max_n_logits=3, batch_size=64)
    cgf = importlib.import_module("circuit_tracer.utils.create_graph_files")
    # create_graph_files reads the tokenizer by the model's name from the hub; this one exists only here
    monkeypatch.setattr(cgf.AutoTokenizer, "from_pretrained", lambda *a, **k: model.tokenizer)
    cgf.create_graph_files(graph, "tiny-graph", str(out / "graph"), scan="tiny-clt")
    return out / "graph" / "tiny-graph.json"


def write_dashboards(out: Path, store: Path, seed: int) -> Path:
    """A `saelab inspect` site of a random TopK SAE (48 latents) over the synthetic store."""
    sae = load_sae(write_sae(out.parent / f"sae-{seed}", d_sae=48, seed=seed))
    stats = collect(sae, ActivationStore(store), HOOK, tokens=10**6, top_k=4, quantiles=2, per_quantile=2, bins=8,
                    left=4, right=2, progress=False)  # fmt: skip
    meta = {"sae": f"sae-{seed}", "store": str(store), "hook": HOOK, "model": "synthetic", "architecture": "topk",
            "k": 4, "max_active": None, "d_in": 24, "left": 4, "right": 2, "quantiles": 2, "per_quantile": 2,
            "include_bos": False, "aip": False, "logit_lens": False}  # fmt: skip
    vocab = [f"tok{i}" for i in range(90)]
    cosine = nearest(stats.latents, np.asarray(sae.params.W_dec), 4)
    write_site(out, Dashboards(stats, None, cosine, None, vocab, meta), shard_latents=16)
    return out


@pytest.fixture(scope="module")
def graph_site(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(the graph page, the graph JSON, the JSON's content), the page written beside dashboards L0/ and L1/."""
    root = tmp_path_factory.mktemp("graph")
    with pytest.MonkeyPatch.context() as mp:
        path = circuit_tracer_graph(root, mp)
    store = write_store(root / "store")
    site = root / "site"
    for layer in range(LAYERS):
        write_dashboards(site / f"L{layer}", store, seed=layer)
    return write_graph_page(path, site), path, json.loads(path.read_text())


def test_the_page_draws_every_node_and_edge(browser, graph_site) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    page, _, g = graph_site
    browser.get(page.resolve().as_uri())
    _ready(browser)
    kinds = {"cross layer transcoder": "feature", "mlp reconstruction error": "error"}
    want = {}
    for n in g["nodes"]:
        k = kinds.get(n["feature_type"], n["feature_type"])
        want[k] = want.get(k, 0) + 1
    assert set(want) == {"feature", "error", "embedding", "logit"}  # circuit-tracer's graph has every kind
    for k, count in want.items():
        assert len(browser.find_elements(By.CSS_SELECTOR, f"#graph .node.{k}")) == count
    edges = browser.find_elements(By.CSS_SELECTOR, "#graph line.edge")
    assert len(edges) == len(g["links"]) > 10
    positive = sum(link["weight"] >= 0 for link in g["links"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#graph line.edge.pos")) == positive
    assert 0 < positive < len(g["links"])
    widths = sorted(float(e.get_attribute("stroke-width")) for e in edges)
    assert widths[0] < 1 and widths[-1] == pytest.approx(4.0)  # the largest |weight| draws widest
    assert browser.find_element(By.ID, "counts").text == f"{len(g['nodes'])} nodes · {len(g['links'])} edges"
    ys = {
        n.get_attribute("data-node-id"): float(n.get_attribute("cy"))
        for n in browser.find_elements(By.CSS_SELECTOR, "#graph circle.node")
    }
    low = [n["node_id"] for n in g["nodes"] if n["feature_type"] == "cross layer transcoder" and n["layer"] == "0"]
    high = [n["node_id"] for n in g["nodes"] if n["feature_type"] == "cross layer transcoder" and n["layer"] == "1"]
    assert low and high and ys[low[0]] > ys[high[0]]  # later layers higher up
    xs = [float(e.get_attribute("x")) for e in browser.find_elements(By.CSS_SELECTOR, "#graph rect.node.embedding")]
    assert xs == sorted(xs) and len(set(xs)) == len(g["metadata"]["prompt_tokens"])  # positions left to right
    browser.save_screenshot(str(SHOT))
    slider = browser.find_element(By.ID, "min-weight")
    browser.execute_script("arguments[0].value = 30; arguments[0].dispatchEvent(new Event('input'))", slider)
    strong = sum(abs(link["weight"]) >= 0.3 * max(abs(k["weight"]) for k in g["links"]) for link in g["links"])
    assert 0 < strong < len(g["links"]) and sum(e.is_displayed() for e in edges) == strong


def test_hover_shows_top_tokens_and_click_opens_the_dashboard(browser, graph_site) -> None:  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page, _, g = graph_site
    browser.get(page.resolve().as_uri())
    _ready(browser)
    node = max((n for n in g["nodes"] if n["feature_type"] == "cross layer transcoder"), key=lambda n: n["influence"])
    layer, index = node["layer"], int(node["node_id"].split("_")[1])
    el = browser.find_element(By.CSS_SELECTOR, f'circle.node[data-node-id="{node["node_id"]}"]')
    ActionChains(browser).move_to_element(el).perform()
    tip = browser.find_element(By.ID, "tooltip")
    assert tip.is_displayed()
    tokens = read_top_tokens(page.parent / f"L{layer}")[index]
    assert f"layer {layer}, index {index}" in tip.text and tokens and all(t in tip.text for t in tokens)
    lit = browser.find_elements(By.CSS_SELECTOR, "#graph line.edge.lit")
    i = el.get_attribute("data-i")
    assert lit and all(i in (e.get_attribute("data-s"), e.get_attribute("data-t")) for e in lit)
    browser.save_screenshot(str(SHOT.with_name("graph_page_hover.png")))
    el.click()
    _ready(browser)
    assert browser.current_url.endswith(f"/L{layer}/latent.html?i={index}")
    assert browser.find_element(By.ID, "title").text == f"Latent {index}"


def test_bad_graph_files_are_named(tmp_path, graph_site) -> None:
    _, path, g = graph_site
    assert len(read_graph(path).nodes) == len(g["nodes"])
    bad = tmp_path / "bad.json"
    for broken, match in [
        ({**g, "nodes": [{k: v for k, v in n.items() if k != "ctx_idx"} for n in g["nodes"]]}, "ctx_idx"),
        ({**g, "links": [*g["links"], {"source": "nope", "target": g["nodes"][0]["node_id"], "weight": 1.0}]}, "nope"),
        ({**g, "nodes": [{**n, "ctx_idx": 99} for n in g["nodes"]]}, "outside the 8 prompt positions"),
    ]:
        bad.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=match):
            write_graph_page(bad, tmp_path / "site")
    with pytest.raises(FileNotFoundError, match="saelab trace"):
        write_graph_page(tmp_path / "missing.json", tmp_path / "site")
