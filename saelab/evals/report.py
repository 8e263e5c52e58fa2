"""The eval's markdown report with PNG plots (latent density, maximum decoder cosine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROWS = [
    ("explained_variance", "Explained variance 1 - SSE/SST (BOS excluded)"),
    ("nmse", "Normalised MSE SSE / sum ‖x‖²"),
    ("cosine", "Mean cosine(x, x_hat)"),
    ("l0", "L0 (active latents per token)"),
    ("l1", "L1 of the codes per token"),
    ("shrinkage", "Shrinkage mean ‖x̂‖ / ‖x‖"),
    ("dead_fraction", "Dead fraction (never fired on these tokens)"),
    ("dense_fraction", "Dense fraction"),
    ("ce_loss_clean", "CE loss, clean"),
    ("ce_loss_sae", "CE loss, SAE spliced in"),
    ("ce_loss_zero_ablation", "CE loss, zero ablation"),
    ("ce_loss_mean_ablation", "CE loss, mean ablation"),
    ("ce_loss_recovered", "CE loss recovered vs zero ablation"),
    ("ce_loss_recovered_mean_ablation", "CE loss recovered vs mean ablation"),
    ("kl_div", "KL(clean ‖ spliced) per position"),
]


def write_report(result: dict[str, Any], out_json: Path) -> Path:
    """Write `<out>.md` and `<out>-density.png`, `<out>-decoder-cosine.png` beside the eval JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = out_json.with_suffix("")
    plots = {}
    for key, hist, xlabel in (
        ("density", result["density_log10_histogram"], "log10 firing density"),
        ("decoder-cosine", result["max_decoder_cosine"]["histogram"], "max cosine to another decoder row"),
    ):
        fig, ax = plt.subplots(figsize=(5, 3))
        edges = hist["edges"]
        ax.stairs(hist["counts"], edges, fill=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("latents")
        fig.tight_layout()
        path = Path(f"{stem}-{key}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        plots[key] = path.name
    m = result["meta"]
    k_text = f", k={m['k']}" if m.get("k") else ""
    lines = [
        f"# SAE evaluation: {m['sae']}",
        "",
        f"{m['architecture']} SAE, {m['d_sae']:,} latents{k_text}, "
        f"at `{m['hook']}` of `{m['model']}`; {m['tokens_evaluated']:,} tokens of `{m['corpus']}` "
        f"({m['split']} split), BOS positions excluded, {m['seconds']} s.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {label} | {result[key]:.4f} |" for key, label in ROWS),
        f"| Max decoder cosine, mean | {result['max_decoder_cosine']['mean']:.4f} |",
        f"| Latents with max decoder cosine > 0.9 | {result['max_decoder_cosine']['fraction_above_0.9']:.4f} |",
        "",
        f"Latents never firing on these tokens: {result['density_log10_histogram']['never_fired']:,}.",
        "",
        f"![latent density]({plots['density']})",
        f"![decoder cosine]({plots['decoder-cosine']})",
        "",
    ]
    path = stem.with_suffix(".md")
    path.write_text("\n".join(lines))
    return path
