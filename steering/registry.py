"""The registry of known pairs (assets/pairs.json) as typed specs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Union

from .errors import AdapterMissingError, UnknownPairError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
REGISTRY_FILE = ASSETS / "pairs.json"


@dataclass(frozen=True)
class AdapterSource:
    """A PEFT adapter merged into a base source; the base may itself be an AdapterSource (a DPO adapter on top of
    the merged SFT model)."""

    base: "Source"
    adapter: Path


Source = Union[str, AdapterSource]


@dataclass(frozen=True)
class PairSpec:
    name: str
    base: Source
    post: Source
    architecture: str = ""
    params_b: float = 0.0
    chat_template: str = "post"  # 'post', or the name of assets/chat_templates/<name>.jinja
    end_of_turn: str | None = None
    description: str = ""
    license: str = ""
    checkpoints: Path | None = None
    dpo: Path | None = None  # the DPO stage's folder: adapter/ (final) and checkpoints/stepN/

    def chat_template_text(self) -> str | None:
        """The template text when it comes from assets/, None when it comes from the post model's tokenizer."""
        if self.chat_template == "post":
            return None
        return (ASSETS / "chat_templates" / f"{self.chat_template}.jinja").read_text().strip()


def _source(raw: str | dict) -> Source:
    if isinstance(raw, dict):
        return AdapterSource(raw["base"], (ASSETS.parent / raw["adapter"]).resolve())
    return raw


@lru_cache(maxsize=1)
def _raw_registry() -> dict[str, dict]:
    data = json.loads(REGISTRY_FILE.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def pair_names() -> list[str]:
    return list(_raw_registry())


def pair_spec(name: str) -> PairSpec:
    """The spec of a registered pair. 'demo@step120' names a checkpoint of a pair that keeps checkpoints."""
    registered, _, checkpoint = name.partition("@")
    raw = _raw_registry().get(registered)
    if raw is None:
        raise UnknownPairError(f"Unknown pair '{name}'. Known pairs: {', '.join(pair_names())}; or give base= and "
                               f"post= sources (Hugging Face id, local folder or .gguf file).")
    fields = {k: v for k, v in raw.items() if k in PairSpec.__dataclass_fields__}
    fields.update(name=name, base=_source(raw["base"]), post=_source(raw["post"]))
    if raw.get("checkpoints"):
        fields["checkpoints"] = (ASSETS.parent / raw["checkpoints"]).resolve()
    if raw.get("dpo"):
        fields["dpo"] = (ASSETS.parent / raw["dpo"]).resolve()
    elif isinstance(fields["post"], AdapterSource):  # by convention beside the SFT adapter: assets/demo/dpo
        fields["dpo"] = fields["post"].adapter.parent / "dpo"
    spec = PairSpec(**fields)
    if checkpoint:
        spec = _at_checkpoint(spec, checkpoint)
    return spec


DPO = "dpo"  # the DPO stage's final adapter; its checkpoints are named dpo-stepN


def _by_step(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: int("".join(filter(str.isdigit, n)) or 0))


def _adapters_in(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return [p.name for p in folder.iterdir() if (p / "adapter_config.json").is_file()]


def _dpo_stages(spec: PairSpec) -> list[str]:
    """The DPO stages on disk in training order: dpo-stepN..., then dpo."""
    if spec.dpo is None:
        return []
    steps = [f"{DPO}-{n}" for n in _by_step(_adapters_in(spec.dpo / "checkpoints"))]
    return steps + ([DPO] if (spec.dpo / "adapter" / "adapter_config.json").is_file() else [])


BASE, SFT = "base", "sft"  # the pair's end points as stage names: the base model and the final SFT model
BETWEEN = ".."  # 'demo@step36..dpo': a pair of two stages, the first one as the base


def _sft_checkpoints(spec: PairSpec) -> list[str]:
    folder = spec.checkpoints
    return _by_step([p.name for p in folder.iterdir() if p.is_dir()]) if folder and folder.is_dir() else []


def stage_names_of(spec: PairSpec) -> list[str]:
    """Every stage of a pair that keeps checkpoints, in training order: base, the SFT checkpoints, sft (the final
    SFT model), the DPO checkpoints and dpo; [] for a pair that keeps none."""
    if spec.checkpoints is None or not isinstance(spec.post, AdapterSource):
        return []
    return [BASE, *_sft_checkpoints(spec), SFT, *_dpo_stages(spec)]


def stage_source(spec: PairSpec, stage: str) -> Source:
    """The weights of one stage of a registered pair; an unknown stage gets the list of the stages that exist."""
    registered = spec.name.partition("@")[0]
    if spec.checkpoints is None or not isinstance(spec.post, AdapterSource):
        raise UnknownPairError(f"Pair '{registered}' keeps no training checkpoints.")
    if stage == BASE:
        return spec.post.base
    if stage == SFT:
        return spec.post
    if stage in _dpo_stages(spec):
        return AdapterSource(spec.post, spec.dpo / ("adapter" if stage == DPO else f"checkpoints/{stage[len(DPO) + 1:]}"))
    if stage in _sft_checkpoints(spec):
        return AdapterSource(spec.post.base, spec.checkpoints / stage)
    hint = "" if _dpo_stages(spec) or not stage.startswith(DPO) else \
        " (no DPO stage yet: train it with `python -m steering.posttrain dpo`)"
    raise AdapterMissingError(f"No stage '{stage}' of pair '{registered}' in {spec.checkpoints}; "
                              f"available: {', '.join(stage_names_of(spec)) or 'none'}{hint}.")


def _at_checkpoint(spec: PairSpec, checkpoint: str) -> PairSpec:
    """'stepN' or 'dpo…': that stage beside the base; 'A..B': stage A as the base and stage B as the post model."""
    first, between, second = checkpoint.partition(BETWEEN)
    if between:
        return PairSpec(**{**spec.__dict__, "base": stage_source(spec, first), "post": stage_source(spec, second)})
    return PairSpec(**{**spec.__dict__, "post": stage_source(spec, checkpoint)})


def checkpoint_names(name: str = "demo") -> list[str]:
    """The stages a registered pair keeps besides its end points, in training order: the SFT checkpoints, then the
    DPO checkpoints and the final DPO model, e.g. ['step36', 'step108', 'step216', 'dpo-step60', ..., 'dpo']."""
    spec = pair_spec(name)
    if spec.checkpoints is None or not spec.checkpoints.is_dir():
        return []
    return _by_step([p.name for p in spec.checkpoints.iterdir() if p.is_dir()]) + _dpo_stages(spec)
