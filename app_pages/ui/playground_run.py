"""The Playground's run record: what one Generate did and produced, typed, kept in the session under RESULT_KEY;
and the two ways a run is set up, from the page's steering blocks or from an opened card."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch

from app_pages.ui.steering_form import SteeringChoice
from steering import Direction
from steering.card import SteeringCard, card_for
from steering.composition import Composition, PositionRule
from steering.generation import DecodingSettings, SteeringSpec
from steering.pairs import ModelPair
from steering.playground import ContrastPrompts, mean_residuals, reference_prompts

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
    recorded: tuple[dict, ...] = ()  # the opened card's generations, as it recorded them

    def agreement(self) -> tuple[int, int] | None:
        """(texts the same as the card recorded, texts compared), when this run restored a card on its prompts."""
        if not self.recorded:
            return None
        ours = self.texts()
        theirs = {(r["prompt"], r["model"], r["steered"]): r["text"] for r in self.recorded}
        shared = [k for k in theirs if k in ours]
        return (sum(ours[k] == theirs[k] for k in shared), len(shared)) if shared else None

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


def run_from_form(pair: ModelPair, choices: Sequence[SteeringChoice], rule: PositionRule, prompts: list[str],
                  chat: bool, decoding: DecodingSettings, names: Mapping[str, str]) -> PlaygroundRun:
    """A run (no generations yet) of the page's steering blocks: each direction read from its source (a bar while
    the residual stream is read), the composition at the rule's positions, the affine ablation's reference means
    (from the first affine block's contrast, or harmless instructions)."""
    found, sources = [], []
    for choice in choices:
        bar = st.progress(0.0, text="Reading the residual stream…")
        found.append(choice.directions(pair, progress=lambda done, total: bar.progress(
            done / total, text=f"Reading the residual stream… {done}/{total} prompts")))
        bar.empty()
        sources.append(SteeringSource(choice.label(names), choice.contrast,
                                      choice.read_from if choice.contrast else None))
    composition = Composition(tuple(c.spec(d, rule.positions()) for c, d in zip(choices, found)))
    references, reference_label = None, None
    affine = next((c for c in choices if c.mode == "ablate" and c.ablation == "affine"), None)
    if affine is not None:
        with st.spinner("Reading each model's mean residual on the reference prompts…"):
            texts, position = reference_prompts(pair, affine.contrast)
            references = mean_residuals(pair, texts, position)
        reference_label = (f"the first {len(texts)} {affine.contrast.name.split(' vs ')[-1]} prompts"
                           if affine.contrast is not None else f"{len(texts)} harmless instructions")
    return PlaygroundRun(prompts, chat, decoding, composition, tuple(sources), found[0], pd.DataFrame(),
                         pd.DataFrame(), references, reference_label)


def run_from_card(opened: tuple[str, SteeringCard], prompts: list[str], chat: bool,
                  decoding: DecodingSettings) -> PlaygroundRun:
    """A run (no generations yet) of an opened card's steerings and reference means, on the page's prompts."""
    name, card = opened
    sources = tuple(SteeringSource(e.label or e.spec.direction.info.dataset, None, e.read_from)
                    for e in card.steerings)
    return PlaygroundRun(prompts, chat, decoding, card.composition(), sources,
                         {"loaded": card.steerings[0].spec.direction}, pd.DataFrame(), pd.DataFrame(),
                         card.references, "the card's reference prompts", name, card.calibration, card.generations)
