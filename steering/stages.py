"""The road from a base model to its post-trained sibling: the stages a registered pair keeps, in training order.

    for stage in stages("demo"): print(stage.name, stage.step, stage.phase, stage.pair)
    # base 0 base demo@base · step36 36 sft demo@step36 · ... · sft 360 sft demo@sft · dpo-step60 420 dpo ... · dpo 600

A stage's step counts optimiser steps from the base: the SFT's own step, then the SFT's total plus the DPO's step.
Each stage is a pair with the base (`demo@step36`); `demo@step36..dpo` pairs two stages. `training_losses` reads
both stages' committed training logs as one table along the same step axis."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownPairError
from .registry import BASE, BETWEEN, DPO, SFT, AdapterSource, PairSpec, pair_spec, stage_names_of

PHASES = ("base", "sft", "dpo")


@dataclass(frozen=True)
class Stage:
    name: str  # 'base', 'step36', 'sft', 'dpo-step60', 'dpo'
    step: int  # optimiser steps from the base model
    phase: str  # 'base', 'sft' or 'dpo'
    pair: str  # the registered pair name of this stage beside the base, e.g. 'demo@step36'


def _digits(name: str) -> int:
    return int("".join(filter(str.isdigit, name)) or 0)


def _log_summary(folder: Path | None) -> dict:
    path = folder / "training_log.json" if folder is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def _sft_folder(spec: PairSpec) -> Path | None:
    return spec.post.adapter.parent if isinstance(spec.post, AdapterSource) else None


def sft_steps(spec: PairSpec) -> int:
    """The SFT's total steps, from its training log; without one, one past the last checkpoint."""
    steps = _log_summary(_sft_folder(spec)).get("config", {}).get("steps")
    if steps:
        return int(steps)
    names = [n for n in stage_names_of(spec) if n.startswith("step")]
    return max(map(_digits, names), default=0) + 1


def dpo_steps(spec: PairSpec) -> int:
    steps = _log_summary(spec.dpo).get("config", {}).get("steps")
    if steps:
        return int(steps)
    names = [n for n in stage_names_of(spec) if n.startswith(f"{DPO}-")]
    return max(map(_digits, names), default=0) + 1


def stages(pair_name: str = "demo") -> list[Stage]:
    """Every stage of a registered pair that keeps checkpoints, in training order (UnknownPairError otherwise)."""
    registered = pair_name.partition("@")[0]
    spec = pair_spec(registered)
    names = stage_names_of(spec)
    if not names:
        raise UnknownPairError(f"Pair '{registered}' keeps no training checkpoints, so it has no stages.")
    sft_total, out = sft_steps(spec), []
    for name in names:
        if name == BASE:
            step, phase = 0, "base"
        elif name == SFT:
            step, phase = sft_total, "sft"
        elif name == DPO:
            step, phase = sft_total + dpo_steps(spec), "dpo"
        elif name.startswith(f"{DPO}-"):
            step, phase = sft_total + _digits(name), "dpo"
        else:
            step, phase = _digits(name), "sft"
        out.append(Stage(name, step, phase, f"{registered}@{name}"))
    return out


def pick_stages(pair_name: str, names: list[str] | tuple[str, ...] | None) -> list[Stage]:
    """The named stages in training order (all when names is empty); an unknown name lists the stages there are."""
    every = stages(pair_name)
    if not names:
        return every
    known = {s.name: s for s in every}
    unknown = [n for n in names if n not in known]
    if unknown:
        from .errors import AdapterMissingError

        raise AdapterMissingError(f"No stage {', '.join(repr(n) for n in unknown)} of pair "
                                  f"'{pair_name.partition('@')[0]}'; available: {', '.join(known)}.")
    return [s for s in every if s.name in set(names)]


def stage_pair_name(pair_name: str, first: str, second: str) -> str:
    """The pair name of two stages, the first one as the base: 'demo@step36..dpo' ('demo@dpo' when first is base)."""
    registered = pair_name.partition("@")[0]
    return f"{registered}@{second}" if first == BASE else f"{registered}@{first}{BETWEEN}{second}"


def training_losses(pair_name: str = "demo") -> list[dict]:
    """The committed training logs of both stages as rows (step, phase, split, metric, value) on the stages' step
    axis: the SFT's cross-entropy, then the DPO's preference loss, train and validation."""
    spec = pair_spec(pair_name.partition("@")[0])
    rows: list[dict] = []
    for phase, folder, offset in (("sft", _sft_folder(spec), 0), ("dpo", spec.dpo, sft_steps(spec))):
        path = folder / "training_log.csv" if folder is not None else None
        if path is None or not path.is_file():
            continue
        with path.open(encoding="utf-8") as f:
            for entry in csv.DictReader(f):
                for split, key in (("train", "loss"), ("validation", "val_loss")):
                    if entry.get(key):
                        rows.append({"step": offset + int(entry["step"]), "phase": phase, "split": split,
                                     "metric": "cross-entropy" if phase == "sft" else "DPO loss",
                                     "value": float(entry[key])})
    return rows


def stage_digest(pair_name: str, stage: str) -> str:
    """A content hash of a stage's weights as they come from disk: its adapter files along the chain of adapters
    to the base (the base itself by its name), so a retrained checkpoint changes it."""
    import hashlib

    from .registry import stage_source

    digest = hashlib.sha256()
    source = stage_source(pair_spec(pair_name.partition("@")[0]), stage)
    while isinstance(source, AdapterSource):
        for file in ("adapter_model.safetensors", "adapter_config.json"):
            path = source.adapter / file
            digest.update(path.read_bytes() if path.is_file() else b"missing")
        source = source.base
    digest.update(str(source).encode())
    return digest.hexdigest()[:16]
