"""sae-bench 0.6's (and sae-probes 0.4's) own functions for the five offline SAEBench metrics, on a SAELens SAE and
a TransformerLens model, at a workload given by the caller: the peer side of saebench_vs_saelab.py.

Each `peer_*` returns `Peer(seconds, numbers, note)`; `seconds` is wall time of sae-bench's code and of the
model passes its data sources would make (its ActivationsStore runs the model: here the same token batches are
handed to it through `TokenStore`). A metric that runs past its `timeout` raises `PeerTimeout`.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class Peer(NamedTuple):
    """One metric run by sae-bench: its seconds, its headline numbers, and how its workload was set."""

    seconds: float
    numbers: dict[str, Any]
    note: str
    extrapolated: bool = False


class PeerTimeout(Exception):
    """A peer metric ran past its time limit."""


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise `PeerTimeout` in the main thread after `seconds` (SIGALRM; torch returns to Python between ops)."""

    def expire(*_):
        raise PeerTimeout(f"ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class TokenStore:
    """What sae-bench's core reads from a SAELens ActivationsStore: the caller's token batches, in order."""

    def __init__(self, batches: list, context: int) -> None:
        self.batches, self.i = batches, 0
        self.context_size, self.store_batch_size_prompts = context, len(batches[0])

    def get_batch_tokens(self, _n: int | None = None):
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        return b

    def reset_input_dataset(self) -> None:
        self.i = 0


class _Buffer:
    """What sae-bench's MDL reads from its ActivationsStore: one filtered batch of activations (n, d_in)."""

    def __init__(self, x) -> None:
        self.x = x

    def get_filtered_llm_batch(self):
        return self.x


def peer_core(sae, tl, batches: list, ignore: set[int]) -> Peer:
    """`run_evals` of sae-bench core with every metric on, the batches given as its store's, then
    `calculate_misc_metrics`: the count of batches is passed as `n_eval_*_batches`, their size as
    `batch_size_prompts` and `context_size`."""
    import torch
    from sae_bench.evals.core import main
    from sae_bench.evals.core.eval_config import CoreEvalConfig

    n, (b, ctx) = len(batches), tuple(batches[0].shape)
    cfg = CoreEvalConfig(
        batch_size_prompts=b, n_eval_reconstruction_batches=n, n_eval_sparsity_variance_batches=n, context_size=ctx,
        compute_kl=True, compute_ce_loss=True, compute_l2_norms=True, compute_sparsity_metrics=True,
        compute_variance_metrics=True, compute_featurewise_density_statistics=True,
        compute_featurewise_weight_based_metrics=True, exclude_special_tokens_from_reconstruction=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    with torch.no_grad():
        metrics, feats = main.run_evals(sae, TokenStore(batches, ctx), tl, cfg, ignore_tokens=ignore)
        misc = main.calculate_misc_metrics(feats)
    flat = {k: v for group in metrics.values() for k, v in group.items()} | misc
    return Peer(time.perf_counter() - t0, flat, f"run_evals, {n} batch(es) of {b} x {ctx} tokens")


def peer_sparse_probing(sae, tl, hook: str, names: tuple[str, ...], test_rows: int | None) -> Peer:
    """sae-probes' pipeline per dataset (its data, split, `_process_activations` on the TransformerLens model,
    `get_sorted_indices`, `find_best_reg` with L1 at k 1, 2, 5), test sets cut to their first `test_rows` rows
    (sae-probes has no such setting: the cut is applied to its test indices, as saelab cuts its own)."""
    import torch
    from sae_probes.generate_model_activations import _process_activations
    from sae_probes.run_sae_evals import get_sorted_indices, mean_act_normalization
    from sae_probes.utils_data import get_train_test_indices, get_yvals, read_numbered_dataset_df
    from sae_probes.utils_training import find_best_reg

    t0 = time.perf_counter()
    acc: dict[int, list[float]] = {1: [], 2: [], 5: []}
    for name in names:
        df = read_numbered_dataset_df(name)
        y = get_yvals(name)[:5000]
        n_train = min(len(df) - 100, 1024)
        train, test = get_train_test_indices(y, n_train, min(len(df), 5000) - n_train - 1, 0.5, 42)
        test = test[:test_rows]
        texts = df["prompt"].to_numpy()[np.concatenate([train, test])].tolist()
        with torch.no_grad():
            acts = _process_activations(tl, texts, 32, 1024, [hook], None, "cpu")[hook]
            z = sae.encode(acts)
        z_tr, z_te = z[: len(train)], z[len(train) :]
        order = get_sorted_indices(z_tr, torch.from_numpy(y[train]), mean_act_normalization)
        for k in acc:
            ids = order[:k]
            r = find_best_reg(z_tr[:, ids].numpy(), y[train], z_te[:, ids].numpy(), y[test], penalty="l1", seed=42)
            acc[k].append(r.metrics.test_acc)
    numbers = {f"sae_top_{k}_test_accuracy": float(np.mean(v)) for k, v in acc.items()}
    cut = "whole test sets" if test_rows is None else f"test sets cut to {test_rows}"
    return Peer(time.perf_counter() - t0, numbers, f"sae-probes functions, {len(names)} datasets, {cut}")


def peer_absorption(sae, tl, layer: int, vocab: list[str]) -> Peer:
    """sae-bench absorption's own pipeline (`run_k_sparse_probing_experiment`: probe, k-sparse probes;
    `run_feature_absortion_experiment`; `_aggregate_results_df`) with its default config, artifacts in a fresh
    folder so nothing is read back. sae-bench takes its vocabulary from the tokenizer with no size setting:
    its `get_alpha_tokens` is replaced by one returning `vocab` (saelab's sample of the same words)."""
    import torch
    from sae_bench.evals.absorption import common, feature_absorption, k_sparse_probing, main
    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig

    cfg = AbsorptionEvalConfig(model_name=tl.cfg.model_name)
    tmp = Path(tempfile.mkdtemp(prefix="sb_absorption_"))
    saved = common.get_alpha_tokens, feature_absorption.get_alpha_tokens
    common.get_alpha_tokens = feature_absorption.get_alpha_tokens = lambda *_a, **_k: list(vocab)
    random.seed(cfg.random_seed)
    torch.manual_seed(cfg.random_seed)
    kw = dict(
        model=tl, sae=sae, layer=layer, sae_name="sae", max_k_value=cfg.max_k_value, device="cpu",
        prompt_template=cfg.prompt_template, prompt_token_pos=cfg.prompt_token_pos, probes_dir=tmp / "probes",
    )  # fmt: skip
    t0 = time.perf_counter()
    try:
        with torch.enable_grad():
            probing = k_sparse_probing.run_k_sparse_probing_experiment(
                **kw, experiment_dir=tmp / "ksp", f1_jump_threshold=cfg.f1_jump_threshold,
                k_sparse_probe_l1_decay=cfg.k_sparse_probe_l1_decay,
                k_sparse_probe_batch_size=cfg.k_sparse_probe_batch_size,
                k_sparse_probe_num_epochs=cfg.k_sparse_probe_num_epochs,
                eval_batch_size=cfg.eval_k_sparse_probe_batch_size, verbose=False,
            )  # fmt: skip
        raw = feature_absorption.run_feature_absortion_experiment(
            **kw, experiment_dir=tmp / "fa", sparse_probing_experiment_dir=tmp / "ksp",
            feature_split_f1_jump_threshold=cfg.f1_jump_threshold, batch_size=cfg.llm_batch_size,
        )  # fmt: skip
        agg = main._aggregate_results_df(raw)
    finally:
        common.get_alpha_tokens, feature_absorption.get_alpha_tokens = saved
    seconds = time.perf_counter() - t0
    good = set(probing[probing["f1_probe"] > cfg.min_GT_probe_f1]["letter"])
    rows = agg[agg["letter"].isin(good)]
    numbers = {
        "mean_absorption_fraction_score": float(rows["mean_absorption_fraction"].mean()),
        "mean_full_absorption_score": float(rows["full_absorption_rate"].mean()),
        "letters_with_probe_f1_over_0.6": len(good),
        "saebench_would_report": len(good) >= cfg.min_feats_for_eval,
    }
    return Peer(seconds, numbers, f"its pipeline on the same {len(vocab)} sampled words (get_alpha_tokens replaced)")


def peer_meta_structure(sae, steps: int) -> Peer:
    """sae-bench's `run_eval_single_sae` of meta-structure with `train_steps = steps` (other settings default)."""
    import torch
    from sae_bench.evals.meta_structure import main
    from sae_bench.evals.meta_structure.eval_config import MetaStructureEvalConfig

    cfg = MetaStructureEvalConfig(train_steps=steps)
    main._set_random_seed(cfg.random_seed)
    t0 = time.perf_counter()
    with torch.enable_grad():  # it trains; the caller runs with gradients off
        out = main.run_eval_single_sae("saelab", "sae", sae, cfg, "cpu")
    m = out.eval_result_metrics.meta_structure
    numbers = {"decoder_fraction_variance_explained": m.decoder_fraction_variance_explained}
    return Peer(time.perf_counter() - t0, numbers, f"run_eval_single_sae, train_steps={steps}")


def peer_mdl(sae, acts, n_latents: int) -> Peer:
    """sae-bench MDL's row loop as `run_eval_single_sae` runs it (for each bins and k: `build_bins`,
    `check_quantised_features_reach_mse_threshold`, `calculate_dl`) on one buffer of activations `acts` (its
    store's batches: here the caller's, `sae_batch_size` 1). Its bins start from zeros and a running maximum
    from 100 (its `get_min_max_activations`, a closure, recomputed here on the buffer). `calculate_dl` loops over
    latents in Python; only its first `n_latents` are run and its loop's time is extrapolated linearly to d_sae
    (the other steps run whole). `calculate_dl` calls `.cuda()`: made the identity on this CPU build."""
    import torch
    from sae_bench.evals.mdl import main

    d_sae = sae.cfg.d_sae
    loop_s: list[float] = []

    def first_latents(it, **_):
        t = time.perf_counter()
        yield from itertools.islice(it, n_latents)
        loop_s.append(time.perf_counter() - t)

    saved = main.tqdm, torch.Tensor.cuda, getattr(main, "config", None)
    main.tqdm, torch.Tensor.cuda = first_latents, lambda self, *a, **k: self
    main.config = main.MDLEvalConfig(sae_batch_size=1)
    cfg, buf, rows = main.config, _Buffer(acts), []
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            top = torch.clamp(sae.encode(acts).max(0).values, min=100.0)
            for nb, k in itertools.product(cfg.num_bins_values, cfg.k_values):
                bins = main.build_bins(torch.zeros(d_sae), top, num_bins=nb)
                ok, rmse = main.check_quantised_features_reach_mse_threshold(bins, buf, sae, 0.01, sae, k=k)
                dl = main.calculate_dl(d_sae, bins, "cpu", buf, sae, k=k)
                rows.append({"num_bins": nb, "k": k, "mse_loss": rmse, "within_threshold": ok, "dl_first": dl})
    finally:
        main.tqdm, torch.Tensor.cuda, main.config = saved
    run_s = time.perf_counter() - t0
    seconds = run_s - sum(loop_s) + sum(loop_s) * d_sae / n_latents
    numbers = {
        "min_mse_loss": min(r["mse_loss"] for r in rows),
        "viable_rows": sum(r["within_threshold"] for r in rows),
        f"dl_first_{n_latents}_at_32_bins": next(r["dl_first"] for r in rows if r["num_bins"] == 32),
        "rows": rows,
        "measured_s": round(run_s, 2),
        "dl_loop_s": round(sum(loop_s), 2),
    }
    note = (
        f"calculate_dl's latent loop run on {n_latents} of {d_sae} latents ({sum(loop_s):.1f} s over 18 rows), "
        f"extrapolated x{d_sae / n_latents:.1f}; measured {run_s:.1f} s"
    )
    return Peer(seconds, numbers, note, extrapolated=n_latents < d_sae)
