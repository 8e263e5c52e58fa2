"""saelab: a sparse-autoencoder interpretability workbench on JAX.

Data flows one way: corpus -> model -> harvest -> store -> train -> analyses (evals, atoms, inspect,
circuits, select). Each stage is a sub-package with an importable `run(cfg)`-style entry point; `saelab.cli`
only parses arguments and dispatches.
"""

__version__ = "0.1.0"
