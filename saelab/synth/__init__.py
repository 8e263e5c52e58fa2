"""saelab.synth: SynthSAEBench worlds (Chanin and Garriga-Alonso 2026, arXiv 2602.14687; `sae_lens.synthetic`)
in JAX, and SAEs scored against their known features. docs/synth.md has the recipe, the metrics and results.

- config: `WorldConfig` (the recipe's parameters, SAELens's JSON form both ways) and `preset`.
- hierarchy: the forest of parent/child features as per-level index arrays, and its probability compensation.
- world: `make_world`, `save_world` / `load_world` (SAELens's `SyntheticModel.save` files, either side's).
- sample: jitted batches x = a F + b of true activations a.
- score: `score(sae, world)`: F1 / precision / recall, MCC, uniqueness, EV, L0, dead, shrinkage (SAELens's).
- store: a world's samples written into a saelab activation store, for `saelab train` and the SAELens peer.
- run, report, atoms: the experiment stages (`synth-world`, `synth-score`) and `saelab synth` (cli).
"""

from saelab.synth.config import WorldConfig, preset
from saelab.synth.sample import Sample, batches, sampler
from saelab.synth.score import SynthScores, score, score_all, score_samples
from saelab.synth.world import World, load_world, make_world, save_world

__all__ = [
    "Sample",
    "SynthScores",
    "World",
    "WorldConfig",
    "batches",
    "load_world",
    "make_world",
    "preset",
    "sampler",
    "save_world",
    "score",
    "score_all",
    "score_samples",
]
