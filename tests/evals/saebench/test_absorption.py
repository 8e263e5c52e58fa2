"""SAEBench absorption against sae-bench 0.6's own code (`evals/absorption/`): the vocabulary and prompts from
SmolLM2's tokenizer, per-prompt absorption (`FeatureAbsorptionCalculator`), the feature-split rule, the per-letter
aggregation, and the probe trainer's loss and fit."""

from __future__ import annotations

import random

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import torch

from saelab.evals.saebench import absorption_math, probes, spelling
from saelab.models import Model
from saelab.sae import encode
from tests.evals.saebench.conftest import D_IN
from tests.peer_modules import peer


@pytest.fixture(scope="module")
def tokenizer():
    return Model.load("smollm2-135m").tokenizer


def test_vocabulary_and_prompts_match_saebench(tokenizer) -> None:
    """`get_alpha_tokens` on the same tokenizer gives the same words (ours in id order; its order is a hash map's,
    unspecified), each once; `create_icl_prompt` under
    the same Mersenne Twister state builds the same prompt text and answer (exact equality)."""
    import transformers

    vocab_mod = peer("sae_bench.evals.absorption.vocab")
    prompting = peer("sae_bench.evals.absorption.prompting")
    theirs = vocab_mod.get_alpha_tokens(transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer))
    ours = spelling.alpha_vocab(tokenizer)
    assert sorted(ours) == sorted(theirs) and len(set(ours)) == len(ours) > 10_000
    examples = ours[:500]
    rng = random.Random(7)
    random.seed(7)
    for word in (" cat", "Hello", " zebra", examples[3]):
        p = prompting.create_icl_prompt(
            word,
            examples=examples,
            base_template=spelling.TEMPLATE,
            answer_formatter=prompting.first_letter_formatter(),
            max_icl_examples=10,
            prepend_separator_to_first_example=True,
        )
        mine = spelling.icl_prompt(word, examples, rng)
        assert (mine.text, spelling.answer(word)) == (p.base, p.answer)
    ids = tokenizer.encode(mine.text, add_special_tokens=False).ids
    assert tokenizer.decode([ids[spelling.WORD_POSITION]]).strip() == examples[3].strip()  # the word token


class _FixedActsModel:
    """The HookedTransformer calls the calculator makes, answering with prepared activations at the word token."""

    def __init__(self, acts, position):
        self.acts, self.position, self.i = acts, position, 0

    def to_tokens(self, _text):
        return torch.zeros((1, 12), dtype=torch.long)

    def run_with_cache(self, prompts, names_filter):
        out = torch.zeros((len(prompts), 12, self.acts.shape[1]))
        out[:, self.position] = torch.from_numpy(self.acts[self.i : self.i + len(prompts)])
        self.i += len(prompts)
        return None, {names_filter[0]: out}


def test_prompt_absorption_matches_feature_absorption_calculator(twin) -> None:
    """Absorption fraction and full-absorption flag per prompt equal `calculate_absorption`'s on the same
    activations, probe direction, main latents and SAE (fraction to 1e-5, float32 projections; flags exactly),
    over prompts that reach every branch of the definition."""
    calc_mod = peer("sae_bench.evals.absorption.feature_absorption_calculator")
    rng = np.random.default_rng(3)
    probe = rng.normal(size=D_IN).astype(np.float32)
    probe /= np.linalg.norm(probe)
    sae = twin.torch_sae
    with torch.no_grad():  # some decoder rows along the probe, so absorbers exist
        sae.W_dec[:8] = torch.from_numpy(probe)[None] * 0.6 + sae.W_dec[:8] * 0.4
    params = twin.params._replace(W_dec=jnp.asarray(sae.W_dec.detach().numpy()))
    acts = (rng.normal(size=(64, D_IN)) + 1.5 * probe).astype(np.float32)
    main_ids = [0, 5]
    words = [f"w{i}" for i in range(len(acts))]
    calc = calc_mod.FeatureAbsorptionCalculator(
        model=_FixedActsModel(acts, -6), icl_word_list=["a", "b"], base_template="{word}:", word_token_pos=-6
    )
    calc._build_prompts = lambda ws: [type("P", (), {"base": w, "word": w})() for w in ws]
    res = calc.calculate_absorption(sae, words, torch.from_numpy(probe), main_ids, layer=0, show_progress=False)
    z = encode(params, jnp.asarray(acts), twin.cfg)
    w_dec = params.W_dec / jnp.linalg.norm(params.W_dec, axis=-1, keepdims=True)
    cos = jnp.broadcast_to(w_dec @ jnp.asarray(probe), z.shape)
    main = np.zeros(z.shape, bool)
    main[:, main_ids] = True
    direction = jnp.broadcast_to(jnp.asarray(probe), acts.shape)
    ours = absorption_math.prompt_absorption(jnp.asarray(acts), z, direction, cos, jnp.asarray(main))
    theirs_frac = np.array([r.absorption_fraction for r in res.word_results])
    np.testing.assert_allclose(np.asarray(ours.fraction), theirs_frac, atol=1e-5)
    assert np.asarray(ours.full).tolist() == [r.is_full_absorption for r in res.word_results]
    assert (theirs_frac == 0).any() and ((theirs_frac > 0) & (theirs_frac < 1)).any()


def test_feature_splits_and_aggregation_match_saebench() -> None:
    """The split latents of `add_feature_splits_to_metrics_df` and the per-letter means of `_aggregate_results_df`
    (then sae-bench's mean over letters with probe F1 > 0.6) equal ours exactly / to 1e-12."""
    ks = peer("sae_bench.evals.absorption.k_sparse_probing")
    main = peer("sae_bench.evals.absorption.main")
    rng = np.random.default_rng(4)
    letters = list(spelling.LETTERS)
    rows, splits = [], {}
    for letter in letters:
        f1s = np.sort(rng.uniform(0, 1, 10)) if letter < "m" else rng.uniform(0, 1, 10)
        feats = [list(range(k)) for k in range(1, 11)]
        rows.append({"letter": letter} | {f"f1_sparse_sae_{k}": f1s[k - 1] for k in range(1, 11)})
        rows[-1] |= {f"sparse_sae_k_{k}_feats": np.array(feats[k - 1]) for k in range(1, 11)}
        splits[letter] = absorption_math.feature_splits(list(f1s), feats)
    df = pd.DataFrame(rows)
    ks.add_feature_splits_to_metrics_df(df, max_k_value=10, f1_jump_threshold=0.03)
    assert {r.letter: r.split_feats for r in df.itertuples()} == splits
    n = 300
    names = rng.choice(letters, n)
    frac, full = rng.uniform(0, 1, n) * (rng.uniform(size=n) > 0.5), rng.uniform(size=n) > 0.8
    raw = pd.DataFrame({"letter": names, "absorption_fraction": frac, "is_full_absorption": full})
    raw["num_probe_true_positives"] = raw.groupby("letter")["letter"].transform("size")
    raw["split_feats"] = [splits[x] for x in names]
    agg = main._aggregate_results_df(raw)
    probe_f1 = {x: float(rng.uniform(0.3, 1)) for x in letters}
    per_letter, summary = absorption_math.aggregate(names, frac, full, splits, probe_f1)
    for ours, theirs in zip(per_letter, agg.itertuples(), strict=True):
        assert ours.letter == theirs.letter and ours.num_split_features == theirs.num_split_feats
        assert ours.mean_absorption_fraction == pytest.approx(theirs.mean_absorption_fraction, abs=1e-12)
        assert ours.full_absorption_rate == pytest.approx(theirs.full_absorption_rate, abs=1e-12)
    kept = agg[[probe_f1[x] > 0.6 for x in agg["letter"]]]
    assert summary["mean_absorption_fraction_score"] == pytest.approx(kept["mean_absorption_fraction"].mean())


def test_probe_loss_and_fit_match_saebench() -> None:
    """The loss equals sae-bench's (BCEWithLogits with pos_weight, plus the L1 term) on the same weights to 1e-6;
    trained on the same separable data, our probe and `train_multi_probe` reach the same test accuracy within 0.03
    (both fit by shuffled minibatch Adam from random starts, so they agree statistically, not bit for bit)."""
    probing = peer("sae_bench.evals.absorption.probing")
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(4, D_IN)) * 2
    y = rng.integers(0, 4, 800)
    x = (centres[y] + rng.normal(size=(800, D_IN))).astype(np.float32)
    onehot = np.eye(4, dtype=np.float32)[y]
    w, b = rng.normal(size=(4, D_IN)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    pos_weight = (len(y) - onehot.sum(0)) / onehot.sum(0)
    theirs = (
        torch.nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(pos_weight))(
            torch.from_numpy(x @ w.T + b), torch.from_numpy(onehot)
        )
        + 0.01 * torch.from_numpy(w).abs().sum(-1).mean()
    )
    ours = probes.probe_loss(
        probes.Probe(jnp.asarray(w), jnp.asarray(b)), x, onehot, pos_weight, jnp.ones(len(y)), 0.01
    )
    np.testing.assert_allclose(float(ours), theirs.item(), rtol=1e-6)
    cfg = probes.ProbeConfig(num_epochs=10, batch_size=64)
    mine = probes.train_probe(x[:600], onehot[:600], cfg)
    torch.manual_seed(0)
    ref = probing.train_multi_probe(
        torch.from_numpy(x[:600]),
        torch.from_numpy(onehot[:600]),
        num_epochs=10,
        batch_size=64,
        weight_decay=1e-4,
        show_progress=False,
        device=torch.device("cpu"),
    )
    acc_mine = np.mean(np.asarray(mine.scores(jnp.asarray(x[600:]))).argmax(1) == y[600:])
    acc_ref = np.mean(ref(torch.from_numpy(x[600:])).detach().numpy().argmax(1) == y[600:])
    assert acc_ref > 0.8 and abs(acc_mine - acc_ref) <= 0.03
