"""SAEBench's sparse probing on the datasets that ship inside the `sae-probes` package (Kantamneni et al. 2025,
arXiv 2502.16681; sae-bench 0.6 `evals/sparse_probing_sae_probes/`, sae-probes 0.4 `run_sae_evals.py`,
`utils_training.py`, `utils_data.py`), "normal" setting, L1 probes, k in {1, 2, 5}.

Per binary dataset: labels by sorted class value; the first 5,000 rows; a balanced training set of
`min(size - 100, 1024)` and a balanced test set of the rest (minus one), drawn by `np.random.RandomState(42)` in
sae-probes' order; x the hook's activation at each prompt's last token (`prompt_ids`: BOS first, as the
TransformerLens tokenizer sae-probes uses adds it, then the text's last 1,023 tokens); z its SAE codes. Latents
are ranked by `|mean_pos - mean_neg|` of z divided column-wise by its mean non-zero |value|; for the top k,
`LogisticRegression(penalty="l1", solver="saga", max_iter=1000, random_state=42)` with C among
`logspace(5, -5, 10)` chosen by validation AUC (the last min(20 %, 100) training rows; 6-fold stratified below
128 rows), refit on the shuffled training set; test accuracy, AUC and weighted F1, averaged over datasets.
`probe_fit = "l2-c1"` is the faster named variant: one L2 fit at C = 1 (lbfgs), no search. The quick variant
runs three datasets (`QUICK_DATASETS`) and scores the first 500 rows of each test set; other workloads are
named in sizes.py (`medium`: eight datasets, 1,000 test rows).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import LeavePOut, StratifiedKFold

from saelab.evals.saebench.context import BenchContext

KS = (1, 2, 5)
MAX_ROWS = 5000
MAX_TOKENS = 1024
SEED = 42


def data_dir() -> Path:
    """The sae-probes package's data folder (found without importing the package)."""
    spec = importlib.util.find_spec("sae_probes")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "sparse-probing reads its datasets from the sae-probes package, which is not installed: "
            "pip install --no-deps sae-probes==0.4.2 (or `just setup-saebench`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def datasets() -> dict[str, Path]:
    """Every binary dataset of sae-probes: numbered tag (e.g. `5_hist_fig_ismale`) -> its CSV."""
    root = data_dir()
    master = pd.read_csv(root / "probing_datasets_MASTER.csv.zst", compression="zstd")
    names = master[master["Data type"] == "Binary Classification"]["Dataset save name"]
    return {Path(n).stem: root / f"{n}.zst" for n in names}


def split(y: np.ndarray, n_train: int, n_test: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Balanced train and test row indices (half positive, rounded up), drawn in sae-probes' order."""
    rng = np.random.RandomState(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_pos, t_pos = int(np.ceil(n_train / 2)), int(np.ceil(n_test / 2))
    train = [rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_train - n_pos, replace=False)]
    rest_pos, rest_neg = np.setdiff1d(pos, train[0]), np.setdiff1d(neg, train[1])
    test = [rng.choice(rest_pos, t_pos, replace=False), rng.choice(rest_neg, n_test - t_pos, replace=False)]
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def prompt_ids(tokenizer: Any, prompts: list[str], bos_id: int | None) -> list[list[int]]:
    """Each prompt's token ids as sae-probes runs them: TransformerLens gives its model a tokenizer made with
    `add_bos_token=True` (when the model has a BOS token), and sae-probes truncates from the left to `MAX_TOKENS`
    with that BOS kept, so the ids are BOS then the text's last `MAX_TOKENS - 1` tokens. On the short prompts of the
    datasets (a name, a short sentence) the BOS changes the last token's activation well beyond float noise
    (docs/evaluation.md, SAEBench suite)."""
    head = [] if bos_id is None else [bos_id]
    keep = MAX_TOKENS - len(head)
    texts = tokenizer.encode_batch(prompts, add_special_tokens=False)
    return [head + e.ids[max(len(e.ids) - keep, 0) :] for e in texts]


@jax.jit
def ranked_latents(z: jax.Array, y: jax.Array) -> jax.Array:
    """Latent ids by decreasing |mean difference| of the mean-normalised codes z (n, d_sae) between y 1 and 0."""
    col_mean = jnp.abs(z).sum(0) / ((z != 0).sum(0) + 1e-6)
    zn = z / (col_mean + 1e-6)
    pos = y[:, None] == 1
    diff = jnp.where(pos, zn, 0).sum(0) / pos.sum() - jnp.where(pos, 0, zn).sum(0) / (~pos).sum()
    return jnp.argsort(-jnp.abs(diff), stable=True)


def fit_probe(x_train, y_train, x_test, y_test, fit: str = "saebench", seed: int = SEED) -> dict[str, float]:
    """Test accuracy, AUC, weighted F1 and validation AUC of the probe `fit` names (see the module docstring)."""
    with warnings.catch_warnings():  # sklearn 1.8 deprecates `penalty`; sae-probes passes it, so do we
        warnings.simplefilter("ignore")
        return _fit_probe(x_train, y_train, x_test, y_test, fit, seed)


def _fit_probe(x_train, y_train, x_test, y_test, fit: str, seed: int) -> dict[str, float]:
    make = lambda c: LogisticRegression(C=c, penalty="l1", solver="saga", random_state=seed, max_iter=1000)
    best_c, val_auc = None, float("nan")
    if fit == "l2-c1":
        make, best_c = (lambda c: LogisticRegression(C=c, max_iter=1000, random_state=seed)), 1.0
    elif len(x_train) > 3:
        folds = _folds(x_train, y_train, seed)
        cs = np.logspace(5, -5, 10)
        scores = [np.mean([_fold_auc(make(c), x_train, y_train, tr, va) for tr, va in folds]) for c in cs]
        best_c, val_auc = cs[int(np.argmax(scores))], float(np.max(scores))
    model = make(best_c) if best_c is not None else make(1.0)
    order = np.random.RandomState(seed).permutation(len(x_train))
    model.fit(x_train[order], y_train[order])
    pred = model.predict(x_test)
    proba = model.predict_proba(x_test)[:, 1]
    return {
        "test_accuracy": float(accuracy_score(y_test, pred)),
        "test_auc": float(roc_auc_score(y_test, proba)),
        "test_f1": float(f1_score(y_test, pred, average="weighted")),
        "val_auc": val_auc,
    }


def _folds(x: np.ndarray, y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """sae-probes' validation splits: leave-2-out up to 12 rows, 6-fold stratified below 128, else the last
    min(20 %, 100) rows; folds whose validation part lacks a class are dropped."""
    n = len(x)
    if n >= 128:
        cut = n - min(int(0.2 * n), 100)
        return [(np.arange(cut), np.arange(cut, n))]
    cv = LeavePOut(2) if n <= 12 else StratifiedKFold(n_splits=6, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in cv.split(x, y) if len(np.unique(y[va])) == 2]


def _fold_auc(model, x, y, tr, va) -> float:
    if len(np.unique(y[tr])) < 2:
        return 0.5
    return roc_auc_score(y[va], model.fit(x[tr], y[tr]).predict_proba(x[va])[:, 1])


def dataset_scores(ctx: BenchContext, name: str, path: Path) -> dict[str, Any]:
    """One dataset: the probe metrics for each k."""
    df = pd.read_csv(path, compression="zstd")
    y_all = np.unique(df["target"].to_numpy(), return_inverse=True)[1][:MAX_ROWS]
    n_train = min(len(df) - 100, 1024)
    n_test = min(len(df), MAX_ROWS) - n_train - 1
    train, test = split(y_all, n_train, n_test)
    test = test[: ctx.sizes.probing_test_rows]  # None: the whole test set
    rows = np.concatenate([train, test])
    prompts = df["prompt"].to_numpy()[rows].tolist()
    ids = prompt_ids(ctx.model.tokenizer, prompts, ctx.model.bos_id)
    x = ctx.prompt_acts(ids, -1, f"sparse-probing: {name}")
    enc, _ = ctx.codec()
    z = np.asarray(enc(ctx.sae.params, jnp.asarray(x)))
    z_train, z_test = z[: len(train)], z[len(train) :]
    y_train, y_test = y_all[train], y_all[test]
    order = np.asarray(ranked_latents(jnp.asarray(z_train), jnp.asarray(y_train)))
    out: dict[str, Any] = {"dataset": name, "train": len(train), "test": len(test)}
    for k in KS:
        ids_k = order[:k]
        m = fit_probe(z_train[:, ids_k], y_train, z_test[:, ids_k], y_test, ctx.cfg.probe_fit)
        out |= {f"sae_top_{k}_{key}": v for key, v in m.items() if key != "val_auc"}
    return out


def evaluate(ctx: BenchContext) -> dict[str, Any]:
    """The sae-probes binary datasets of the run's sizes (every one in the full variant); means over datasets."""
    every = datasets()
    sizes = ctx.sizes
    names = sizes.probing_datasets or tuple(every)
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise ValueError(f"sparse probing: unknown datasets {unknown}; sae-probes' are named like {list(every)[:3]}")
    details = [dataset_scores(ctx, n, every[n]) for n in names]
    means = {k: float(np.mean([d[k] for d in details])) for k in details[0] if k.startswith("sae_top_")}
    rows = "whole test sets" if sizes.probing_test_rows is None else f"test sets cut to {sizes.probing_test_rows} rows"
    variant = f"{ctx.variant}: {len(names)} of {len(every)} datasets, {rows}"
    return {**means, "datasets": len(details), "variant": variant, "probe_fit": ctx.cfg.probe_fit, "details": details}


def markdown(m: dict[str, Any]) -> str:
    """The report's sparse-probing section."""
    rows = "\n".join(
        f"| {k} | {m[f'sae_top_{k}_test_accuracy']:.4f} | {m[f'sae_top_{k}_test_auc']:.4f} | "
        f"{m[f'sae_top_{k}_test_f1']:.4f} |"
        for k in KS
    )
    return (
        f"{m['datasets']} sae-probes datasets ({m['variant']}), probe fit `{m['probe_fit']}`.\n\n"
        f"| k | test accuracy | test AUC | test F1 |\n| --- | --- | --- | --- |\n{rows}\n"
    )
