"""Atoms (Hu et al., "Towards Atoms of Large Language Models", arXiv 2509.20784; docs/methods.md, "Atoms").

Pure array functions that analyse any dictionary D (m, d) with codes Z (n, m) or top-k `SparseCodes`:
neurons (D = identity, Z = activations), features (ReLU/TopK SAE decoder rows) or atoms (JumpReLU SAE).

- metric: the atomic inner product `aip` in the metric S = (E[h h^T])^-1 (estimated and whitened by
  `saelab.whitening`, re-exported here).
- coherence: global and per-atom mu, blocked so the m x m Gram matrix is never built.
- uniqueness: the Donoho-Elad bound mu < 1/(2K - 1) per sample, per atom, and q*.
- rip: sampled restricted isometry constant delta_K.
- recovery: batched FISTA (LASSO) over the whitened dictionary, support precision / recall, R^2.
- reconstruction: sparse reconstruction R^2 = 1 - SSE/SST of a dictionary with its codes.
- synthetic: dictionaries with known coherence and K-sparse codes.
- dictionary, analysis, run, report, plots: neurons / features / atoms compared on a store (`saelab atoms`,
  the `atoms` experiment stage: `AtomsConfig` in config.py and `run(cfg)`).
"""

from saelab.atoms.analysis import DictionaryReport, analyse
from saelab.atoms.codes import SparseCodes, to_dense
from saelab.atoms.coherence import Coherence, coherence
from saelab.atoms.config import AnalysisOptions, AtomsConfig
from saelab.atoms.dictionary import Dictionary, from_sae, load_dictionary, neurons
from saelab.atoms.metric import aip, cosine, pair_angles
from saelab.atoms.reconstruction import Reconstruction, reconstruct, sparse_r2
from saelab.atoms.recovery import Recovery, fista, lambda_max, lipschitz, recover
from saelab.atoms.rip import RIP, rip_constant
from saelab.atoms.run import run
from saelab.atoms.uniqueness import (
    QStar,
    Uniqueness,
    UniquenessAccumulator,
    atom_unique,
    bound,
    q_star,
    uniqueness,
)
from saelab.whitening import (
    Metric,
    Moments,
    accumulate,
    estimate_metric,
    identity_metric,
    metric_from_activations,
    moments_of,
    whiten,
)

__all__ = [
    "AnalysisOptions",
    "AtomsConfig",
    "Dictionary",
    "DictionaryReport",
    "UniquenessAccumulator",
    "analyse",
    "from_sae",
    "load_dictionary",
    "neurons",
    "run",
    "RIP",
    "Coherence",
    "Metric",
    "Moments",
    "QStar",
    "Reconstruction",
    "Recovery",
    "SparseCodes",
    "Uniqueness",
    "accumulate",
    "aip",
    "atom_unique",
    "bound",
    "coherence",
    "cosine",
    "estimate_metric",
    "fista",
    "identity_metric",
    "lambda_max",
    "lipschitz",
    "metric_from_activations",
    "moments_of",
    "pair_angles",
    "q_star",
    "reconstruct",
    "recover",
    "rip_constant",
    "sparse_r2",
    "to_dense",
    "uniqueness",
    "whiten",
]
