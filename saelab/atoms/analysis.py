"""Every atoms measurement of one dictionary on one set of activations (docs/methods.md, "Atoms").

`analyse(dictionary, X, metric, options)` encodes the activations X (n, d) in blocks and measures, in the AIP
metric estimated from the same activations: sparse reconstruction R^2, per-atom coherence (and the Euclidean
coherence beside it), per-sample / per-atom uniqueness and q*, a sampled RIP constant, LASSO (FISTA) recovery
of the codes on a subset, and random pair angles for the Euclidean vs AIP histograms. The result labels every
number with its definition (`DictionaryReport.row()` and `DEFINITIONS`).
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from saelab.atoms.coherence import Coherence, coherence
from saelab.atoms.config import AnalysisOptions
from saelab.atoms.dictionary import Dictionary
from saelab.atoms.metric import pair_angles
from saelab.atoms.reconstruction import Reconstruction, add_batch, finish, reconstruct
from saelab.atoms.recovery import Recovery, recover
from saelab.atoms.rip import RIP, rip_constant
from saelab.atoms.support import support_coherence
from saelab.atoms.uniqueness import DEFINITIONS as U_DEFS
from saelab.atoms.uniqueness import Uniqueness, UniquenessAccumulator
from saelab.whitening import Metric, normalise, whiten

# Column -> definition, for the table rows of `DictionaryReport.row()` (atoms.json carries this mapping).
DEFINITIONS: dict[str, str] = {
    "dictionary": "label: neurons (standard basis), features (ReLU/TopK SAE), atoms (JumpReLU SAE)",
    "d_sae": "number of dictionary rows m",
    "l0": "mean over samples of ||z||_0, the number of non-zero code entries",
    "r2": "sparse reconstruction 1 - sum ||x - (z D + b_dec)||^2 / sum ||x - mean(x)||^2 (raw activations)",
    "uniqueness": "per-atom: " + U_DEFS["all_samples"] + " (or median_k, see atom_definition); bound with mu_i "
    "in the AIP metric",
    "uniqueness_median_k": "per-atom: " + U_DEFS["median_k"] + "; bound with mu_i in the AIP metric",
    "uniqueness_samples": U_DEFS["frac_samples_unique"] + "; mu_i in the AIP metric",
    "q_star": U_DEFS["q_star"] + "; per-sample coherence in the AIP metric",
    "uniqueness_support": "per-atom uniqueness as `uniqueness`, per-sample coherence restricted to the support "
    "(alternative reading): mu_supp(z) = max_{i != j in supp z} |<d_i, d_j>_S|",
    "uniqueness_samples_support": "fraction of samples with mu_supp(z) < 1/(2||z||_0 - 1) (alternative reading; "
    "samples with ||z||_0 > support_max_k use max_{i in supp z} mu_i)",
    "q_star_support": "q* with the per-sample coherence mu_supp(z) (alternative reading)",
    "coherence": "mu = max_{i != j} |<d_i, d_j>_S|, S = (E[h h^T])^-1 (AIP; centred: inverse covariance)",
    "coherence_median": "median over atoms of mu_i = max_{j != i} |<d_i, d_j>_S|",
    "coherence_euclidean": "mu = max_{i != j} |cos(d_i, d_j)|, Euclidean",
    "fired": "fraction of atoms active on at least one analysed sample",
    "rip_k": "order K of the sampled RIP constant (median L0, capped by rip_max_k)",
    "rip_delta": "max over sampled K-subsets of max(1 - s_min^2, s_max^2 - 1) of whitened unit atoms "
    "(a lower bound on delta_K)",
    "lasso_precision": "|supp z_lasso & supp z| / |supp z_lasso|, FISTA LASSO over the whitened unit atoms",
    "lasso_recall": "|supp z_lasso & supp z| / |supp z|, same LASSO",
    "lasso_r2": "1 - SSE/SST of the LASSO reconstruction of whitened x - b_dec",
    "angle_dev90_euclidean": "median |angle - 90 deg| over random atom pairs, Euclidean",
    "angle_dev90_aip": "median |angle - 90 deg| over random atom pairs, AIP",
}


class DictionaryReport(NamedTuple):
    """Measurements of one dictionary; `row()` is its line of the table."""

    name: str
    kind: str
    architecture: str
    hook: str
    m: int
    l0: float
    recon: Reconstruction
    coherence: Coherence  # AIP
    coherence_euclidean: Coherence
    uniqueness: Uniqueness
    uniqueness_support: Uniqueness | None  # per-sample coherence restricted to the support (alternative)
    rip: RIP | None
    recovery: Recovery | None
    angles_euclidean: np.ndarray  # (pairs,) degrees
    angles_aip: np.ndarray  # (pairs,) degrees
    seconds: dict[str, float]

    def row(self) -> dict[str, Any]:
        """Flat table row; each numeric column is defined in `DEFINITIONS`."""
        u, us = self.uniqueness, self.uniqueness_support
        dev = lambda a: float(np.median(np.abs(a - 90.0)))
        return {
            "dictionary": self.name,
            "kind": self.kind,
            "architecture": self.architecture,
            "hook": self.hook,
            "layer": layer_of(self.hook),
            "d_sae": self.m,
            "l0": self.l0,
            "r2": self.recon.r2,
            "uniqueness": u.frac_atoms_unique,
            "uniqueness_median_k": u.frac_atoms_unique_as("median_k"),
            "uniqueness_samples": u.frac_samples_unique,
            "q_star": u.q_star.q,
            "uniqueness_support": us.frac_atoms_unique if us else None,
            "uniqueness_samples_support": us.frac_samples_unique if us else None,
            "q_star_support": us.q_star.q if us else None,
            "coherence": self.coherence.mu,
            "coherence_median": float(np.median(np.asarray(self.coherence.per_atom))),
            "coherence_euclidean": self.coherence_euclidean.mu,
            "fired": u.n_atoms_fired / self.m,
            "rip_k": self.rip.k if self.rip else None,
            "rip_delta": self.rip.delta if self.rip else None,
            "lasso_precision": self.recovery.precision if self.recovery else None,
            "lasso_recall": self.recovery.recall if self.recovery else None,
            "lasso_r2": self.recovery.recon.r2 if self.recovery else None,
            "angle_dev90_euclidean": dev(self.angles_euclidean),
            "angle_dev90_aip": dev(self.angles_aip),
        }

    def details(self) -> dict[str, dict[str, Any]]:
        """Every summary of every measurement: name -> {value, definition}."""
        parts = [self.recon.summary(), self.coherence.summary(), self.uniqueness.summary()]
        parts.append({f"euclidean_{k}": v for k, v in self.coherence_euclidean.summary().items()})
        if self.uniqueness_support:
            alt = "; per-sample coherence restricted to the support (alternative reading)"
            parts.append({f"support_{k}": (v, d + alt) for k, (v, d) in self.uniqueness_support.summary().items()})
        if self.rip:
            parts.append(self.rip.summary())
        if self.recovery:
            parts.append(self.recovery.summary())
        return {k: {"value": v, "definition": d} for p in parts for k, (v, d) in p.items()}


def analyse(
    dic: Dictionary, X: np.ndarray, metric: Metric, options: AnalysisOptions, hook: str = ""
) -> DictionaryReport:
    """Measure `dic` on activations X (n, d) in the AIP metric `metric` (see the module docstring)."""
    if X.ndim != 2 or X.shape[1] != dic.D.shape[1]:
        raise ValueError(f"activations must be (n, {dic.D.shape[1]}) for {dic.name}, got {X.shape}")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    coh = coherence(dic.D, metric)
    coh_e = coherence(dic.D, None)
    seconds["coherence"] = time.perf_counter() - t

    t = time.perf_counter()
    recon, uniq, uniq_s = _encode_all(dic, X, coh.per_atom, metric, options)
    seconds["encode_uniqueness_r2"] = time.perf_counter() - t
    l0 = float(jnp.mean(uniq.samples.l0))

    rip = None
    if options.rip_subsets:
        t = time.perf_counter()
        k = int(min(max(2, round(float(np.median(np.asarray(uniq.samples.l0))))), options.rip_max_k, dic.m))
        batch = max(1, min(1024, 4_000_000 // (k * k), options.rip_subsets))
        rip = rip_constant(dic.D, k, metric, n_subsets=options.rip_subsets, seed=options.seed, batch=batch)
        seconds["rip"] = time.perf_counter() - t

    rec = None
    n_rec = min(options.recovery_samples, X.shape[0])
    if n_rec:
        t = time.perf_counter()
        Xr = jnp.asarray(X[:n_rec], jnp.float32)
        codes = dic.encode(Xr)  # (n_rec, m)
        Xc = Xr if dic.bias is None else Xr - dic.bias  # the codes reconstruct x - b_dec
        rec = recover(
            Xc,
            dic.D,
            codes,
            metric=metric,
            lam=options.recovery_lam,
            relative=True,
            n_iter=options.recovery_iters,
            nonneg=dic.kind != "neurons",
            block=n_rec,
        )
        seconds["recovery"] = time.perf_counter() - t

    t = time.perf_counter()
    ang_e = np.asarray(pair_angles(dic.D, None, options.angle_pairs, options.seed))
    ang_s = np.asarray(pair_angles(dic.D, metric, options.angle_pairs, options.seed))
    seconds["angles"] = time.perf_counter() - t
    return DictionaryReport(
        name=dic.name,
        kind=dic.kind,
        architecture=dic.architecture,
        hook=hook or dic.hook or "",
        m=dic.m,
        l0=l0,
        recon=recon,
        coherence=coh,
        coherence_euclidean=coh_e,
        uniqueness=uniq,
        uniqueness_support=uniq_s,
        rip=rip,
        recovery=rec,
        angles_euclidean=ang_e,
        angles_aip=ang_s,
        seconds=seconds,
    )


def layer_of(hook: str) -> int | None:
    """The block index of a `blocks.{L}.` hook name, else None."""
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else None


def _encode_all(
    dic: Dictionary, X: np.ndarray, per_atom: jnp.ndarray, metric: Metric, options: AnalysisOptions
) -> tuple[Reconstruction, Uniqueness, Uniqueness | None]:
    """One pass over X in equal blocks (the last padded): R^2 sums and uniqueness statistics (both readings)."""
    n = X.shape[0]
    block = min(options.block, n)
    acc = UniquenessAccumulator(per_atom)
    acc_s = UniquenessAccumulator(per_atom) if options.support_coherence else None
    Dn = normalise(whiten(dic.D, metric)) if acc_s else None  # (m, d) unit atoms in the AIP metric
    sums = None
    for s in range(0, n, block):
        e = min(s + block, n)
        xb = jnp.asarray(np.pad(X[s:e], ((0, block - (e - s)), (0, 0))), jnp.float32)  # (block, d)
        codes_p = dic.encode(xb)  # (block, m)
        codes = codes_p[: e - s]
        acc.add(codes)
        if acc_s is not None:
            acc_s.add(codes, support_coherence(Dn, codes_p, per_atom, options.support_max_k)[: e - s])
        sums = add_batch(sums, xb[: e - s], reconstruct(codes, dic.D, dic.bias))
    if sums is None:
        raise ValueError("no activations to analyse")
    res_s = acc_s.result(options.atom_definition) if acc_s else None
    return finish(sums), acc.result(options.atom_definition), res_s


def fmt(v: Any, digits: int = 4) -> str:
    """Compact rendering for tables: None -> '-', floats to `digits` significant places."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{digits}g}"
    return str(v)
