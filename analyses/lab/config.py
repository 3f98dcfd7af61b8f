"""The lab's settings: which stages and studies run, and the lighter settings each study runs with at every stage.

A full road is nine stages (base, three SFT checkpoints, the SFT, three DPO checkpoints, the DPO model), each run
as a pair with the base; at the studies' defaults that is about 80 min on 2 cores. `STUDY_SETTINGS` trims each study
to what the timeline reads, the same at every stage, so stages are comparable with each other (not with a study
page's default run)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..study import setting

# Per study: the settings that differ from its defaults at every stage of the lab (the rest are the defaults).
STUDY_SETTINGS: dict[str, dict[str, Any]] = {
    "truthfulness": {},  # the study's default, the paper's method (coefficient 1, the normalised effect)
    "refusal": {"layer_step": 2, "n_test": 24},  # every other layer, 24 test prompts per side (also its defaults)
    "knowledge": {"components": "resid", "cross_model": False},  # the residual-stream map the timeline correlates
    "confidence": {"max_tokens": 256, "n_questions": 100},  # half the text and questions of a study run
    "diffing": {},
}


@dataclass(frozen=True)
class Config:
    stages: tuple[str, ...] = setting((), "stages to run, e.g. base step36 sft dpo; empty = every stage of the pair")
    studies: tuple[str, ...] = setting((), "studies to run at every stage; empty = every study in the registry")
    transfer: bool = setting(True, "also add the final model's and the base's refusal directions to every stage "
                                   "(needs the refusal study)")


def study_config(study) -> Any:
    """The Config a study runs with at every stage of the lab."""
    return replace(study.Config(), **STUDY_SETTINGS.get(study.name, {}))
