"""The lab's settings: which stages and studies run, and the lighter settings each study runs with at every stage.

A full road is nine stages (base, three SFT checkpoints, the SFT, three DPO checkpoints, the DPO model), each run
as a pair with the base; at the studies' defaults that is about 80 min on 2 cores. Each study's record trims it to
what the timeline reads (`Study.lab.settings`), the same at every stage, so stages are comparable with each other
(not with a study page's default run)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..study import setting

@dataclass(frozen=True)
class Config:
    stages: tuple[str, ...] = setting((), "stages to run, e.g. base step36 sft dpo; empty = every stage of the pair")
    studies: tuple[str, ...] = setting((), "studies to run at every stage; empty = every study in the registry")
    transfer: bool = setting(True, "also add the final model's and the base's refusal directions to every stage "
                                   "(needs the refusal study)")


def study_config(study) -> Any:
    """The Config a study runs with at every stage of the lab: its record's lab settings over its defaults."""
    return replace(study.Config(), **study.lab.settings)


def lab_settings() -> dict[str, dict[str, Any]]:
    """Per study of the registry, the settings that differ from its defaults at every stage of the lab."""
    import analyses  # the registry as it is now (not a copy bound at import)

    return {study.name: dict(study.lab.settings) for study in analyses.STUDIES}
