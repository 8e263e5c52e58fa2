"""Feature dashboards (issue 7): every latent's statistics in two jitted streaming passes over a store.

- passes: pure jitted steps (counts, max, running top-k contexts, histograms, interval examples).
- collect: streams a store through them; weights: logit lens and nearest latents (cosine, AIP).
- site: the static report (index + latent pages, JSON shards); serve: 127.0.0.1 server; terminal: rich view.
- run: `run(InspectConfig)`, the `inspect` experiment stage; compat: SAE/store checks with clear errors.
"""

from saelab.inspect.config import InspectConfig
from saelab.inspect.run import dashboards, run

__all__ = ["InspectConfig", "dashboards", "run"]
