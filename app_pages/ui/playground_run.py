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
    # one per steering: each model's reference mean for that steering's affine ablation (None: it needs none)
    references: tuple[dict[str, torch.Tensor] | None, ...] = ()
    reference_labels: tuple[str | None, ...] = ()  # one per steering: the reference prompts in words
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

    def reference_label(self, i: int) -> str | None:
        """Steering i's reference prompts in words (None where it has none)."""
        return self.reference_labels[i] if i < len(self.reference_labels) else None

    def texts(self) -> Mapping[tuple[str, str, bool], str]:
        """(prompt, model, steered) -> text."""
        return dict(zip(zip(self.table.prompt, self.table.model, self.table.steered), self.table.text))

    def card(self, pair: ModelPair) -> SteeringCard:
        """The steering card of this run (its generations, directions, references and settings)."""
        return card_for(pair, self.composition, self.prompts, chat=self.chat, decoding=self.decoding,
                        table=self.table, references=self.references or None,
                        read_from=[s.read_from for s in self.sources], labels=[s.label for s in self.sources],
                        calibration=self.calibration)

    def generations_json(self, pair_name: str) -> dict:
        """The generations with the settings that made them, for a download."""
        steerings = [{"mode": s.mode, "layers": list(s.layers), "alpha": s.alpha, "ablation": s.ablation,
                      "positions": PositionRule.of(s.positions).to_json(), "direction": s.direction.metadata()}
                     for s in self.composition.steerings]
        return {"settings": {"pair": pair_name, "chat": self.chat, **self.decoding.__dict__, "steerings": steerings},
                "generations": self.table.to_dict(orient="records")}


def run_from_form(pair: ModelPair, choices: Sequence[SteeringChoice], prompts: list[str], chat: bool,
                  decoding: DecodingSettings, names: Mapping[str, str]) -> PlaygroundRun:
    """A run (no generations yet) of the page's steering blocks: each direction read from its source (a bar while
    the residual stream is read), each at its own block's positions; each affine ablation's reference means from its
    own contrast's negative side (or harmless instructions for a loaded direction), read once per set of prompts."""
    found, sources = [], []
    for choice in choices:
        bar = st.progress(0.0, text="Reading the residual stream…")
        found.append(choice.directions(pair, progress=lambda done, total: bar.progress(
            done / total, text=f"Reading the residual stream… {done}/{total} prompts")))
        bar.empty()
        sources.append(SteeringSource(choice.label(names), choice.contrast,
                                      choice.read_from if choice.contrast else None))
    composition = Composition(tuple(c.spec(d) for c, d in zip(choices, found)))
    references, labels = _affine_references(pair, choices)
    return PlaygroundRun(prompts, chat, decoding, composition, tuple(sources), found[0], pd.DataFrame(),
                         pd.DataFrame(), references, labels)


def _affine_references(pair: ModelPair, choices: Sequence[SteeringChoice]
                       ) -> tuple[tuple[dict[str, torch.Tensor] | None, ...], tuple[str | None, ...]]:
    """Each block's reference means and their label (None for a block that is no affine ablation); blocks whose
    reference prompts are the same share one read."""
    read: dict[tuple, dict[str, torch.Tensor]] = {}
    references, labels = [], []
    for choice in choices:
        if choice.mode != "ablate" or choice.ablation != "affine":
            references.append(None)
            labels.append(None)
            continue
        texts, position = reference_prompts(pair, choice.contrast)
        if (tuple(texts), position) not in read:
            with st.spinner("Reading each model's mean residual on the reference prompts…"):
                read[tuple(texts), position] = mean_residuals(pair, texts, position)
        references.append(read[tuple(texts), position])
        labels.append(f"the first {len(texts)} {choice.contrast.name.split(' vs ')[-1]} prompts"
                      if choice.contrast is not None else f"{len(texts)} harmless instructions")
    return tuple(references), tuple(labels)


def run_from_card(opened: tuple[str, SteeringCard], prompts: list[str], chat: bool,
                  decoding: DecodingSettings) -> PlaygroundRun:
    """A run (no generations yet) of an opened card's steerings, each with its own positions and reference means (a
    card of one shared set: that set for every affine ablation), on the page's prompts."""
    name, card = opened
    sources = tuple(SteeringSource(e.label or e.spec.direction.info.dataset, None, e.read_from)
                    for e in card.steerings)
    return PlaygroundRun(prompts, chat, decoding, card.composition(), sources,
                         {"loaded": card.steerings[0].spec.direction}, pd.DataFrame(), pd.DataFrame(),
                         card.reference_sets(), tuple(None if r is None else "the card's reference prompts"
                                                      for r in card.reference_sets()),
                         name, card.calibration, card.generations)
