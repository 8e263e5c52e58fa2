"""`Config`: the one pydantic base of saelab's configs (stages, sections, the SAE).

Unknown keys are errors (a typo in a TOML file fails before any compute), values are frozen once validated,
and the docstring under each field is its description, which `cliargs` turns into `--help`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """Base of every saelab config: extra keys rejected, frozen, field docstrings as descriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
