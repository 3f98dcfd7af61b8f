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
    """A PEFT adapter merged into a base source."""

    base: str
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
    spec = PairSpec(**fields)
    if checkpoint:
        spec = _at_checkpoint(spec, checkpoint)
    return spec


def _at_checkpoint(spec: PairSpec, checkpoint: str) -> PairSpec:
    if spec.checkpoints is None or not isinstance(spec.post, AdapterSource):
        raise UnknownPairError(f"Pair '{spec.name.partition('@')[0]}' keeps no training checkpoints.")
    folder = spec.checkpoints / checkpoint
    if not folder.is_dir():
        have = sorted(p.name for p in spec.checkpoints.iterdir()) if spec.checkpoints.is_dir() else []
        raise AdapterMissingError(f"No checkpoint '{checkpoint}' in {spec.checkpoints}; "
                                  f"available: {', '.join(have) or 'none'}.")
    return PairSpec(**{**spec.__dict__, "post": AdapterSource(spec.post.base, folder)})


def checkpoint_names(name: str = "demo") -> list[str]:
    """Checkpoints a registered pair keeps, e.g. ['step60', 'step180', 'step360']."""
    spec = pair_spec(name)
    if spec.checkpoints is None or not spec.checkpoints.is_dir():
        return []
    return sorted((p.name for p in spec.checkpoints.iterdir() if p.is_dir()),
                  key=lambda n: int("".join(filter(str.isdigit, n)) or 0))
