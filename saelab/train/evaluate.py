"""Evals during training (`train.eval_every`): the SAE of the current step spliced into the model on a small
fixed held-out token set, with the numbers `saelab eval` reports for that step's export.

The token set (the training corpus's held-out split, `train.eval_tokens` tokens in batches of
`train.eval_batch` windows of the training context) and the mean-ablation value are made once; each eval
folds the input scaling into the current parameters, as the export does, and runs the eval's own compiled
splice (`saelab.evals.batches.splice_fn`, compiled on the first eval and reused), so an eval costs about two
forwards of the held-out tokens (see `saelab.evals.splice`) and no compilation after the first.
"""

from __future__ import annotations

import jax

from saelab.data import open_corpus
from saelab.evals import metrics, splice
from saelab.evals.batches import add_batch, mean_activation, splice_fn, token_batches
from saelab.evals.transcoder import transcoder_splice_fn
from saelab.models import Model
from saelab.runtime.distributed import to_host
from saelab.sae import SAEParams, fold_input_scaling
from saelab.train.config import Resolved, TrainConfig

KEYS = (
    "explained_variance",
    "l0",
    "ce_loss_clean",
    "ce_loss_sae",
    "ce_loss_recovered",
    "ce_loss_recovered_mean_ablation",
    "kl_div",
)
"""The eval results logged, each as eval/<key>."""


class InTrainingEval:
    """Call with the training (input-scaled) parameters; returns {eval/<key>: value} for KEYS."""

    def __init__(
        self, cfg: TrainConfig, r: Resolved, scale: float, out_scale: float | None = None, model: Model | None = None
    ) -> None:
        meta = r.manifest["meta"]
        self.model = model or Model.load(meta["model"])
        self.scale, self.out_scale = scale, out_scale
        self.dense_threshold = cfg.train.dense_threshold
        corpus = open_corpus(meta["corpus"], "heldout")
        self.batches = list(
            token_batches(corpus, self.model, int(meta["context"]), cfg.train.eval_batch, cfg.train.eval_tokens)
        )
        if not self.batches:
            raise ValueError(f"train.eval_every: the held-out split of {meta['corpus']} gives no window to evaluate on")
        store = str(cfg.data.store) if cfg.data.source == "store" else None  # as the export's dataset_path
        self.act_mean = mean_activation(store, self.model, r.target_hook or r.hook, self.batches[0])
        if r.target_hook is None:
            self.fn = splice_fn(self.model.cfg, r.hook, r.sae)
        else:  # a transcoder, spliced in place of the MLP as `saelab eval` does
            self.fn = transcoder_splice_fn(self.model.cfg, r.hook, r.target_hook, r.sae)

    def __call__(self, params: SAEParams) -> dict[str, float]:
        folded = jax.device_put(fold_input_scaling(to_host(params), self.scale, out_scale=self.out_scale))
        splice_sums = recon_sums = None
        for tokens in self.batches:
            splice_sums, recon_sums = add_batch(
                self.fn, self.model, folded, tokens, self.act_mean, splice_sums, recon_sums
            )
        recon = metrics.finish(recon_sums, self.dense_threshold).as_json()
        out = recon | splice.finish(splice.SpliceSums(*splice_sums))
        return {f"eval/{k}": float(out[k]) for k in KEYS}
