"""The atoms plots (docs/methods.md, "Atoms"), one PNG per hook point:

- angles_HOOK.png: angles between random atom pairs, Euclidean vs AIP (unrelated directions centre on 90 deg
  under AIP, and bunch away from it under the Euclidean metric);
- coherence_HOOK.png: distribution of the per-atom coherence mu_i (AIP) of every dictionary;
- uniqueness_vs_l0_HOOK.png: fraction of unique samples and median per-sample coherence against L0, with the
  Donoho-Elad bound 1/(2K - 1);
- scaling_HOOK.png: R^2, per-atom uniqueness and q* against dictionary size, where a hook has one kind of
  dictionary at several sizes.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from saelab.atoms.analysis import DictionaryReport


def write_plots(
    reports: list[DictionaryReport],
    out: Path,
    activation_angles: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[Path]:
    """Write every plot for `reports` into `out`; `activation_angles` maps a hook to (Euclidean, AIP) angles
    between random pairs of its activations, shown beside the atom pairs. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    by_hook: dict[str, list[DictionaryReport]] = defaultdict(list)
    for r in reports:
        by_hook[r.hook].append(r)
    files = []
    for hook, rs in by_hook.items():
        tag = hook.replace(".", "_") or "hook"
        files += [
            _angles(rs, hook, out / f"angles_{tag}.png", (activation_angles or {}).get(hook)),
            _coherence(rs, hook, out / f"coherence_{tag}.png"),
            _uniqueness_vs_l0(rs, hook, out / f"uniqueness_vs_l0_{tag}.png"),
        ]
        scaling = _scaling(rs, hook, out / f"scaling_{tag}.png")
        if scaling:
            files.append(scaling)
    return files


def _angles(rs: list[DictionaryReport], hook: str, path: Path, acts: tuple[np.ndarray, np.ndarray] | None) -> Path:
    import matplotlib.pyplot as plt

    panels = [(r.name, "atom", r.angles_euclidean, r.angles_aip) for r in rs]
    if acts is not None:
        panels.insert(0, ("activations", "token", *acts))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    bins = np.linspace(0, 180, 91)
    for ax, (title, what, euclid, aip) in zip(axes.flat, panels, strict=False):
        ax.hist(euclid, bins, alpha=0.6, density=True, label="Euclidean")
        ax.hist(aip, bins, alpha=0.6, density=True, label="AIP")
        ax.axvline(90, color="k", lw=0.8, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"angle between random {what} pairs (deg)", fontsize=8)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{hook}: pair angles, Euclidean vs AIP", fontsize=10)
    return _save(fig, path)


def _coherence(rs: list[DictionaryReport], hook: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, 1, 101)
    for r in rs:
        ax.hist(
            np.asarray(r.coherence.per_atom),
            bins,
            histtype="step",
            density=True,
            lw=1.4,
            label=f"{r.name} (mu = {r.coherence.mu:.3f})",
        )
    ax.set_xlabel("per-atom coherence mu_i = max_j |<d_i, d_j>_S| (AIP)")
    ax.set_ylabel("density")
    ax.set_title(f"{hook}: coherence distribution", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _uniqueness_vs_l0(rs: list[DictionaryReport], hook: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    k_all = []
    for r in rs:
        s = r.uniqueness.samples
        l0, mu, uq = np.asarray(s.l0), np.asarray(s.mu), np.asarray(s.unique)
        ks, inv, counts = np.unique(l0, return_inverse=True, return_counts=True)
        frac = np.bincount(inv, uq.astype(float)) / counts
        med = np.array([np.median(mu[inv == i]) for i in range(len(ks))])
        keep = ks > 0
        a1.plot(ks[keep], frac[keep], ".-", ms=3, lw=0.8, label=r.name)
        a2.plot(ks[keep], med[keep], ".", ms=3, label=r.name)
        k_all.append(ks[keep])
    ks = np.unique(np.concatenate(k_all)) if k_all else np.array([1])
    kk = np.geomspace(1, max(ks.max(), 2), 200)
    a2.plot(kk, 1 / (2 * kk - 1), "k--", lw=1, label="bound 1/(2K - 1)")
    for a in (a1, a2):
        a.set_xscale("log")
        a.set_xlabel("L0 = ||z||_0 of the sample")
    a1.set_ylabel("fraction of samples unique")
    a2.set_ylabel("median per-sample coherence (AIP)")
    a2.set_yscale("log")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.suptitle(f"{hook}: uniqueness against L0", fontsize=10)
    return _save(fig, path)


def _scaling(rs: list[DictionaryReport], hook: str, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    series: dict[str, list[DictionaryReport]] = defaultdict(list)
    for r in rs:
        if r.kind != "neurons":
            series[f"{r.kind} ({r.architecture})"].append(r)
    series = {k: sorted(v, key=lambda r: r.m) for k, v in series.items() if len({r.m for r in v}) > 1}
    if not series:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for label, v in series.items():
        m = [r.m for r in v]
        axes[0].plot(m, [r.recon.r2 for r in v], "o-", label=label)
        axes[1].plot(m, [r.uniqueness.frac_atoms_unique for r in v], "o-", label=label)
        axes[2].plot(m, [r.uniqueness.q_star.q for r in v], "o-", label=label)
    for a, t in zip(axes, ["R^2", "fraction of atoms unique", "q*"], strict=True):
        a.set_xscale("log", base=2)
        a.set_xlabel("dictionary size m")
        a.set_title(t, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{hook}: scaling with dictionary size", fontsize=10)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
