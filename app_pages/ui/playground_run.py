"""The Playground's run record: what one Generate did and produced, typed, kept in the session under RESULT_KEY."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from steering import Direction
from steering.card import SteeringCard, card_for
from steering.composition import Composition, PositionRule
from steering.generation import DecodingSettings, SteeringSpec
from steering.pairs import ModelPair
from steering.playground import ContrastPrompts

RESULT_KEY = "pg_result"


@dataclass(frozen=True)
class SteeringSource:
    """Where one steering's direction came from: a contrast read from model `read_from`, or a loaded `label`."""

    label: str  # in words, for captions ("from toy read from the post-trained model", "truth.safetensors")
    contrast: ContrastPrompts | None = None
    read_from: str | None = None  # the model the contrast was read from; None for a loaded direction


@dataclass
class PlaygroundRun:
    prompts: list[str]
    chat: bool
    decoding: DecodingSettings
    composition: Composition
    sources: tuple[SteeringSource, ...]  # one per steering of `composition`
    directions: dict[str, Direction]  # the first steering's direction by model read ("base", "post" or "loaded")
    table: pd.DataFrame  # compare()'s: prompt, model, steered, text
    alignment: pd.DataFrame  # layer, cosine, model: the prompts' last token against the first direction
    references: dict[str, torch.Tensor] | None = None  # each model's reference mean, for affine ablations
    reference_label: str | None = None
    card_name: str | None = None  # the steering card this run restored, if any
    calibration: dict | None = None  # carried over from an opened card

    @property
    def first(self) -> SteeringSpec:
        return self.composition.steerings[0]

    @property
    def positions(self) -> PositionRule:
        return PositionRule.of(self.first.positions)

    def texts(self) -> Mapping[tuple[str, str, bool], str]:
        """(prompt, model, steered) -> text."""
        return dict(zip(zip(self.table.prompt, self.table.model, self.table.steered), self.table.text))

    def card(self, pair: ModelPair) -> SteeringCard:
        """The steering card of this run (its generations, directions, references and settings)."""
        return card_for(pair, self.composition, self.prompts, chat=self.chat, decoding=self.decoding,
                        table=self.table, references=self.references,
                        read_from=[s.read_from for s in self.sources], labels=[s.label for s in self.sources],
                        calibration=self.calibration)

    def generations_json(self, pair_name: str) -> dict:
        """The generations with the settings that made them, for a download."""
        steerings = [{"mode": s.mode, "layers": list(s.layers), "alpha": s.alpha, "ablation": s.ablation,
                      "positions": PositionRule.of(s.positions).to_json(), "direction": s.direction.metadata()}
                     for s in self.composition.steerings]
        return {"settings": {"pair": pair_name, "chat": self.chat, **self.decoding.__dict__, "steerings": steerings},
                "generations": self.table.to_dict(orient="records")}
