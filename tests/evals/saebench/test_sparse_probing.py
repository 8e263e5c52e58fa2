"""SAEBench sparse probing against sae-probes 0.4's own functions (`utils_data.py`, `run_sae_evals.py`,
`utils_training.py`): the dataset list and labels, the balanced train/test draw, the latent ranking and the probe
fit with its C search."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from saelab.evals.saebench import sparse_probing as sp
from saelab.evals.saebench.sizes import QUICK_DATASETS
from tests.peer_modules import peer


def test_datasets_labels_and_split_match_sae_probes() -> None:
    """The binary datasets (same tags, same order), a dataset's labels and the RandomState(42) train/test indices
    are identical to sae-probes'."""
    data = peer("sae_probes.utils_data")
    assert list(sp.datasets()) == data.get_numbered_binary_tags()
    name = QUICK_DATASETS[0]
    y = np.unique(sp.pd.read_csv(sp.datasets()[name], compression="zstd")["target"].to_numpy(), return_inverse=True)[1]
    assert np.array_equal(y, data.get_yvals(name))
    for n_train, n_test in ((1024, 3975), (37, 80)):
        theirs = data.get_train_test_indices(y[:5000], n_train, n_test, 0.5, 42)
        ours = sp.split(y[:5000], n_train, n_test)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_latent_ranking_matches_sae_probes() -> None:
    """`get_sorted_indices` with `mean_act_normalization` ranks the latents as ours (continuous random codes with
    zeros, so no ties; float32 means, compared on the top 40)."""
    run = peer("sae_probes.run_sae_evals")
    rng = np.random.default_rng(6)
    z = (rng.exponential(size=(200, 300)) * (rng.uniform(size=(200, 300)) > 0.7)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    z[y == 1, :20] *= 1.5
    theirs = run.get_sorted_indices(torch.from_numpy(z), torch.from_numpy(y), run.mean_act_normalization)
    ours = np.asarray(sp.ranked_latents(jnp.asarray(z), jnp.asarray(y)))
    assert np.array_equal(ours[:40], theirs.numpy()[:40])


@pytest.mark.parametrize("n_train", [300, 60])
def test_probe_fit_matches_find_best_reg(n_train: int) -> None:
    """Test accuracy, AUC, weighted F1 and validation AUC equal `find_best_reg(penalty="l1", seed=42)`'s to 1e-9:
    the same sklearn solver, settings, seeds, C grid and validation splits (a held-out tail at 300 rows, six
    stratified folds at 60)."""
    training = peer("sae_probes.utils_training")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n_train + 200, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=len(x)) > 0).astype(int)
    theirs = training.find_best_reg(x[:n_train], y[:n_train], x[n_train:], y[n_train:], penalty="l1", seed=42)
    ours = sp.fit_probe(x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    assert ours["test_accuracy"] == pytest.approx(theirs.metrics.test_acc, abs=1e-9)
    assert ours["test_auc"] == pytest.approx(theirs.metrics.test_auc, abs=1e-9)
    assert ours["test_f1"] == pytest.approx(theirs.metrics.test_f1, abs=1e-9)
    assert ours["val_auc"] == pytest.approx(theirs.metrics.val_auc, abs=1e-9)
    assert ours["test_accuracy"] > 0.7


class _TokensAsActivations:
    """A stand-in for sae-probes' TransformerLens model: its 'activation' at position p of a row is the row's token
    ids up to p (-1 after, to a width of 1,024), so what `_process_activations` picks for a prompt is the tokens
    the real model's last-token activation depends on (causal attention)."""

    def __init__(self, tokenizer, hook: str) -> None:
        self.tokenizer, self.hook = tokenizer, hook

    def run_with_cache(self, tokens, names_filter, stop_at_layer=None):
        n = tokens.shape[1]
        row = torch.nn.functional.pad(tokens, (0, 1024 - n), value=-1)  # (batch, 1024)
        upto = torch.arange(1024)[None, :] <= torch.arange(n)[:, None]  # (pos, 1024)
        return None, {self.hook: torch.where(upto[None], row[:, None, :], -1).float()}  # (batch, pos, 1024)


def test_prompt_ids_are_the_tokens_sae_probes_runs(tmp_path) -> None:
    """The ids `prompt_ids` gives each prompt are the tokens before and at the position whose activation sae-probes'
    `_process_activations` takes (its tokenizer settings, right padding, left truncation to 1,024 and
    `activation_pos`), with SmolLM2's tokenizer as TransformerLens prepares it (`get_tokenizer_with_bos`, which
    prepends BOS): 300 prompts of a quick dataset and two longer than 1,024 tokens. Exact equality: token ids."""
    from saelab.models.loading import open_checkpoint

    gen = peer("sae_probes.generate_model_activations")
    transformers = peer("transformers")
    from transformer_lens.utilities.tokenize_utils import get_tokenizer_with_bos

    ck = open_checkpoint("smollm2-135m")
    name = {k: ck.tokenizer.id_to_token(ck.special[k]) for k in ("bos", "eos", "padding")}
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=ck.tokenizer, bos_token=name["bos"], eos_token=name["eos"], pad_token=name["padding"]
    ).save_pretrained(tmp_path)
    hook = "blocks.6.hook_resid_post"
    model = _TokensAsActivations(get_tokenizer_with_bos(transformers.AutoTokenizer.from_pretrained(tmp_path)), hook)
    prompts = sp.pd.read_csv(sp.datasets()[QUICK_DATASETS[0]], compression="zstd")["prompt"].tolist()[:300]
    long = " ".join(prompts)  # about 3,000 tokens
    prompts += [long, "x" + long]
    acts = gen._process_activations(model, prompts, 8, 1024, [hook], None, "cpu")[hook]
    theirs = [[int(t) for t in row if t >= 0] for row in acts]
    ours = sp.prompt_ids(ck.tokenizer, prompts, ck.special["bos"])
    assert theirs[0][0] == ck.special["bos"] and len(theirs[-1]) == 1024
    assert ours == theirs
