"""Automated interpretability: explanations of SAE latents written by a language model from their
top-activating contexts, scored by delphi's detection and fuzzing scorers and by a MiniLM embedding scorer,
each score beside the same scorer given a shuffled explanation (another latent's) as a control.

Modules: `judge` (the Judge protocol: LocalJudge on saelab's generation, OpenAIJudge for an OpenAI-compatible
endpoint), `prompts` (delphi's prompt formats and reply parsers), `examples` (contexts from a store),
`explain` (explanations and the shuffled control), `scorers` (the three scorers and their math), `run`
(`run_autointerp`, writing SAE/autointerp.json), `cli` (`saelab autointerp`).
"""

from saelab.evals.autointerp.config import SCORERS, AutointerpConfig
from saelab.evals.autointerp.judge import Judge, LocalJudge, OpenAIJudge, make_judge
from saelab.evals.autointerp.run import AutointerpResult, LatentResult, run_autointerp

__all__ = [
    "SCORERS",
    "AutointerpConfig",
    "AutointerpResult",
    "Judge",
    "LatentResult",
    "LocalJudge",
    "OpenAIJudge",
    "make_judge",
    "run_autointerp",
]
