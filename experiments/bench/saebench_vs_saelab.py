"""saelab's SAEBench suite against sae-bench 0.6's own functions, side by side in one run, on one SAE at its hook and
the same workload per metric: core, absorption, sparse probing, MDL and meta-structure.

    python experiments/bench/saebench_vs_saelab.py [--sae checkpoints/demo-quick] [--variant quick|medium]
        [--quick] [--metrics core,absorption,...] [--mdl-latents 256] [--timeout 900]
        [--probing-datasets 48_cm_correct] [--probing-test-rows 100]

saelab: `saelab.evals.saebench.suite.run` with an `EvalConfig` of the variant (sizes.py), its activation cache in a
fresh temporary folder (so nothing computed earlier makes it faster), the JAX model loaded beforehand. sae-bench:
the same SAE through saelab's SAELens export, loaded by SAELens; SmolLM2 as a TransformerLens HookedTransformer
built from the same weights (its hook activation is checked against saelab's, the max difference printed).
Workloads: core's token batches are the same ids, passed as sae-bench's `n_eval_*_batches` / `batch_size_prompts`;
sparse probing the same datasets and test rows (sae-probes has no row setting: the cut is applied to its test
indices); absorption the same sampled words (sae-bench has no vocabulary size: its `get_alpha_tokens` returns the
sample); MDL the same activations, `calculate_dl`'s per-latent loop run on the first `--mdl-latents` latents and
its time extrapolated linearly (marked `extrapolated` in the table and the RESULT line); meta-structure the same
steps (`train_steps`). Model loading is excluded on both sides. `--quick` shakes the script out on a smaller
workload still (one probing dataset, 100 test rows, 32 MDL latents; absorption keeps the variant's words:
sae-bench's pipeline fails (KeyError in its k-sparse probes, NaN probe loss) when a letter has no training word,
as on a 200-word sample).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import saebench_peer as sbp  # noqa: E402
from common import finish, parser, tl_config  # noqa: E402

METRICS = ("core", "absorption", "sparse-probing", "mdl", "meta-structure")
# (saelab key, sae-bench key) of each metric's headline numbers; None: the same key.
HEADLINES = {
    "core": ["explained_variance", "ce_loss_score", "kl_div_score", "l0", "mse", "cossim"],
    "absorption": ["mean_absorption_fraction_score", "mean_full_absorption_score", "letters_with_probe_f1_over_0.6"],
    "sparse-probing": ["sae_top_1_test_accuracy", "sae_top_2_test_accuracy", "sae_top_5_test_accuracy"],
    "mdl": ["min_mse_loss", "viable_rows", "dl_first_at_32_bins"],
    "meta-structure": ["decoder_fraction_variance_explained"],
}


def main() -> None:
    quick = "one probing dataset, 100 test rows, 32 MDL latents"
    ap = parser(__doc__, "saebench_vs_saelab", quick, mdl_latents=256, timeout=900)
    ap.add_argument("--sae", default="checkpoints/demo-quick")
    ap.add_argument("--variant", choices=("quick", "medium"), default="quick")
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument(
        "--probing-datasets", help="comma-separated sae-probes datasets over the variant's (e.g. 48_cm_correct)"
    )
    ap.add_argument("--probing-test-rows", type=int, help="test rows per probing dataset over the variant's")
    a = ap.parse_args()
    metrics = [m.strip() for m in a.metrics.split(",")]
    from saelab.evals.config import EvalConfig
    from saelab.evals.saebench.sizes import resolve
    from saelab.models import Model

    cache = Path(tempfile.mkdtemp(prefix="saebench_vs_saelab_"))
    shrink = dict(probing_datasets=["5_hist_fig_ismale"], probing_test_rows=100) if a.quick else {}
    if a.probing_datasets:
        shrink["probing_datasets"] = [d.strip() for d in a.probing_datasets.split(",")]
    if a.probing_test_rows:
        shrink["probing_test_rows"] = a.probing_test_rows
    cfg = EvalConfig(
        sae=Path(a.sae), model=a.model, suite=",".join(metrics), suite_variant=a.variant, progress=False,
        suite_cache=cache / "cache", out=cache / "suite.json", **shrink,
    )  # fmt: skip
    variant, sizes = resolve(cfg)
    n_latents = 32 if a.quick else a.mdl_latents
    t0 = time.perf_counter()
    model = Model.load(a.model, process="none")
    load_saelab = time.perf_counter() - t0
    print(f"variant {variant}: {sizes.describe()}", flush=True)
    ours = saelab_side(cfg, model)
    t0 = time.perf_counter()
    tl, sae, hook = peer_model(a, model, cache)
    load_peer = time.perf_counter() - t0
    batches = list(saelab_batches(cfg, model, sizes))
    resid_diff = resid_difference(model, tl, hook, batches[0])
    print(f"layer resid max |saelab - TransformerLens| = {resid_diff:.2e}", flush=True)
    theirs = peer_side(a, metrics, tl, sae, hook, model, batches, sizes, n_latents)
    mdl_check(ours, theirs, cfg, batches, tl, hook, model, n_latents)
    rows = table(metrics, ours, theirs)
    result = {
        "sae": a.sae, "variant": variant, "sizes": sizes._asdict(), "resid_max_diff": resid_diff,
        "load_s": {"saelab": round(load_saelab, 1), "sae_bench": round(load_peer, 1)}, "mdl_latents": n_latents,
        "rows": rows, "saelab": ours, "sae_bench": {k: v._asdict() for k, v in theirs.items()},
    }  # fmt: skip
    kv = {}
    for r in rows:
        key = r["metric"].replace("-", "_")
        ext = "_extrapolated" if r["extrapolated"] else ""
        kv |= {f"{key}_saelab_s": r["saelab_s"], f"{key}_saebench{ext}_s": r["sae_bench_s"], f"{key}_ratio": r["ratio"]}
    done = [r for r in rows if r["sae_bench_s"] == r["sae_bench_s"]]  # NaN: timed out
    kv["total_saelab_s"] = round(sum(r["saelab_s"] for r in done), 1)
    kv["total_saebench_s"] = round(sum(r["sae_bench_s"] for r in done), 1)
    kv["variant"] = variant.replace(" ", "")
    finish(a, json.loads(json.dumps(result, default=_plain)), "resid_max_diff", **kv)


def saelab_side(cfg, model) -> dict:
    """saelab's suite on `cfg` (a fresh cache folder), model given: each metric's JSON with its seconds."""
    from saelab.evals.saebench import suite

    t0 = time.perf_counter()
    out = suite.run(cfg, model=model)
    print(f"saelab suite: {time.perf_counter() - t0:.1f} s", flush=True)
    return {k: v for k, v in out.items() if k != "meta"}


def saelab_batches(cfg, model, sizes):
    """The token batches saelab's core and MDL read (the eval corpus's held-out split), as torch tensors."""
    import torch

    from saelab.data import open_corpus
    from saelab.evals.batches import token_batches

    n = sizes.token_batches * cfg.batch * cfg.context
    corpus = open_corpus(cfg.corpus, cfg.split, cfg.heldout_fraction)
    for b in token_batches(corpus, model, cfg.context, cfg.batch, n):
        yield torch.from_numpy(np.asarray(b)).long()


def peer_model(a, model, tmp: Path):
    """(TransformerLens SmolLM2 with a TransformerLens tokenizer, the SAE as SAELens loads saelab's export, hook)."""
    import torch
    from sae_bench.sae_bench_utils.general_utils import _standardize_sae_cfg
    from sae_lens import SAE
    from transformer_lens import HookedTransformer
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from saelab.models.loading import open_checkpoint
    from saelab.sae import load_sae, save_saelens

    torch.set_grad_enabled(False)
    loaded = load_sae(Path(a.sae))
    hook = loaded.metadata["hook_name"]
    export = save_saelens(tmp / "sae", loaded.params, loaded.cfg, {**loaded.metadata, "model_name": a.model})
    sae = SAE.load_from_disk(str(export), device="cpu")
    _standardize_sae_cfg(sae.cfg)
    ck = open_checkpoint(a.model)
    name = {k: ck.tokenizer.id_to_token(ck.special[k]) for k in ("bos", "eos", "padding")}
    PreTrainedTokenizerFast(
        tokenizer_object=ck.tokenizer, bos_token=name["bos"], eos_token=name["eos"], pad_token=name["padding"]
    ).save_pretrained(tmp / "tok")
    hf = saelab_weights_in_transformers(model, ck)
    cfg = tl_config(hf.config, a.model)
    cfg.default_prepend_bos = True
    tl = HookedTransformer(cfg, tokenizer=AutoTokenizer.from_pretrained(tmp / "tok"))
    tl.load_and_process_state_dict(
        convert_llama_weights(hf, cfg), fold_ln=False, center_writing_weights=False, center_unembed=False
    )
    return tl.eval(), sae, hook


def saelab_weights_in_transformers(model, ck):
    """A transformers Llama holding saelab's own float32 tensors of the checkpoint (transformers' GGUF loader
    dequantises on its own; saelab's tensors keep the TransformerLens activations equal to saelab's)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.cfg
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_mlp, num_hidden_layers=c.n_layers,
            num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, rms_norm_eps=c.norm_eps,
            rope_theta=c.rope_theta, tie_word_embeddings=True, max_position_embeddings=2048,
        )
    )  # fmt: skip
    sd = {k: torch.from_numpy(np.asarray(ck.get(k), np.float32)) for k in hf.state_dict() if k != "lm_head.weight"}
    hf.load_state_dict(sd, strict=False)
    hf.tie_weights()
    return hf.eval()


def resid_difference(model, tl, hook: str, tokens) -> float:
    """Max |saelab - TransformerLens| of the hook's activation on one token batch."""
    _, ours = model.run_with_cache(tokens.numpy().astype(np.int32), [hook], prepend_bos=False)
    _, theirs = tl.run_with_cache(tokens, names_filter=[hook])
    ours, theirs = np.asarray(ours[hook]), theirs[hook].numpy()
    print(f"  (largest |activation| {np.abs(ours).max():.1f})", flush=True)
    return float(np.abs(ours - theirs).max())


def special_ids(model) -> set[int]:
    return {i for i in (model.bos_id, model.eos_id, *model.pad_ids) if i is not None}


def peer_side(a, metrics, tl, sae, hook, model, batches, sizes, n_latents) -> dict:
    """Each metric by sae-bench's code, under `--timeout` seconds each (a timed-out metric is recorded so)."""
    import random

    from saelab.evals.saebench import spelling

    layer = int(hook.split(".")[1])
    runs = {
        "core": lambda: sbp.peer_core(sae, tl, batches, special_ids(model)),
        "absorption": lambda: sbp.peer_absorption(sae, tl, layer, sampled_vocab(model, sizes, spelling, random)),
        "sparse-probing": lambda: sbp.peer_sparse_probing(
            sae, tl, hook, sizes.probing_datasets, sizes.probing_test_rows
        ),
        "mdl": lambda: peer_mdl(sae, tl, hook, model, batches, n_latents),
        "meta-structure": lambda: sbp.peer_meta_structure(sae, sizes.meta_steps),
    }
    out = {}
    for name in metrics:
        try:
            with sbp.deadline(a.timeout):
                out[name] = runs[name]()
        except sbp.PeerTimeout as e:
            out[name] = sbp.Peer(float("nan"), {}, f"timed out: {e}")
        except Exception as e:  # sae-bench's own code failing on this workload is a result too
            out[name] = sbp.Peer(float("nan"), {}, f"failed: {type(e).__name__}: {str(e)[:200]}")
        print(f"sae-bench {name}: {out[name].seconds:.1f} s ({out[name].note})", flush=True)
    return out


def sampled_vocab(model, sizes, spelling, random) -> list[str]:
    """saelab absorption's word sample: `random.Random(42).sample` of its alphabetic vocabulary."""
    full = spelling.alpha_vocab(model.tokenizer)
    n = sizes.absorption_words
    return random.Random(42).sample(full, n) if n is not None and len(full) > n else full


def peer_acts(tl, hook: str, model, batches):
    """The hook's activations at ordinary tokens (BOS, EOS, padding left out) of the batches, by TransformerLens."""
    import torch

    special = torch.tensor(sorted(special_ids(model)))
    return torch.cat([tl.run_with_cache(b, names_filter=[hook])[1][hook][~torch.isin(b, special)] for b in batches])


def peer_mdl(sae, tl, hook, model, batches, n_latents):
    """sae-bench's MDL with the model pass its store would make (timed with it)."""
    t0 = time.perf_counter()
    acts = peer_acts(tl, hook, model, batches)
    fwd = time.perf_counter() - t0
    p = sbp.peer_mdl(sae, acts, n_latents)
    return p._replace(seconds=p.seconds + fwd, note=f"{p.note}; model pass {fwd:.1f} s")


def mdl_check(ours, theirs, cfg, batches, tl, hook, model, n_latents) -> None:
    """saelab's MDL headline numbers beside sae-bench's: the least sqrt(MSE)/d_in over rows, the viable rows,
    and saelab's `description_length` at 32 bins over the same first latents and the same activations."""
    if "mdl" not in ours:
        return
    import jax.numpy as jnp

    from saelab.evals.saebench import mdl
    from saelab.sae import encode, load_sae

    m = ours["mdl"]
    m["min_mse_loss"] = min(r["mse_loss"] for r in m["rows"])
    m["viable_rows"] = sum(r["within_threshold"] for r in m["rows"])
    s = load_sae(cfg.sae)
    z = np.asarray(encode(s.params, jnp.asarray(peer_acts(tl, hook, model, batches).numpy()), s.cfg))
    top = np.maximum(z.max(0), 100.0).astype(np.float32)
    m["dl_first_at_32_bins"] = mdl.description_length(z[:, :n_latents], top[:n_latents], 32)
    if "mdl" in theirs:
        nums = theirs["mdl"].numbers
        if f"dl_first_{n_latents}_at_32_bins" in nums:
            nums["dl_first_at_32_bins"] = nums[f"dl_first_{n_latents}_at_32_bins"]


def table(metrics, ours, theirs) -> list[dict]:
    """Print and return one row per metric: both times, the ratio, both headline numbers."""
    rows = []
    print("\n| metric | saelab s | sae-bench s | ratio | number | saelab | sae-bench |\n|---|---|---|---|---|---|---|")
    for name in metrics:
        mine, peer = ours[name], theirs[name]
        ratio = round(peer.seconds / mine["seconds"], 2) if peer.seconds == peer.seconds else float("nan")
        ext = " (extrapolated)" if peer.extrapolated else ""
        for i, key in enumerate(HEADLINES[name]):
            head = f"| {name} | {mine['seconds']:.1f} | {peer.seconds:.1f}{ext} | {ratio} " if i == 0 else "| | | | "
            print(f"{head}| {key} | {_fmt(mine.get(key))} | {_fmt(peer.numbers.get(key))} |")
        rows.append({
            "metric": name, "saelab_s": mine["seconds"], "sae_bench_s": round(peer.seconds, 1), "ratio": ratio,
            "extrapolated": peer.extrapolated, "note": peer.note,
            "numbers": {k: [mine.get(k), peer.numbers.get(k)] for k in HEADLINES[name]},
        })  # fmt: skip
    for r in rows:
        print(f"  {r['metric']}: sae-bench {r['note']}")
    return rows


def _plain(v):
    """numpy / torch scalars and arrays as JSON values."""
    return v.tolist() if hasattr(v, "tolist") else str(v)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
