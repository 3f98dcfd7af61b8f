"""What a lab run covers: the stages of one registered pair, each named by its weights' content hash."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from steering.stages import Stage, pick_stages, stage_digest, stages

from .config import Config, lab_settings


@dataclass(frozen=True)
class LabData:
    pair: str  # the registered pair whose road it is ('demo')
    stages: tuple[Stage, ...]  # in training order
    digests: tuple[str, ...]  # one per stage: steering.stages.stage_digest
    final: str  # the pair name of the road's last stage (the final post-trained model), e.g. 'demo@dpo'
    final_digest: str  # its weights' content hash: every stage's refusal direction is compared with its


def default_data(pair, config: Config) -> LabData:
    """The stages config.stages names (all by default) of the loaded pair's registered name."""
    registered = pair.name.partition("@")[0]
    chosen, last = pick_stages(registered, config.stages), stages(registered)[-1]
    return LabData(registered, tuple(chosen), tuple(stage_digest(registered, s.name) for s in chosen), last.pair,
                   stage_digest(registered, last.name))


def data_hash(data: LabData) -> str:
    raw = json.dumps([data.pair, [s.__dict__ for s in data.stages], data.digests, data.final, data.final_digest,
                      lab_settings()], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]
