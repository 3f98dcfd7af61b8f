"""The playground's four generations per prompt: the headed columns the text is streamed into and shown in, and the
caption line that says what intervention made the steered columns."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import streamlit as st

from steering.generation import SteeringSpec

ECHO_CHARS = 300  # a long prompt is shown cut: the generations are what the page is for


def four_columns(prompt: str, roles: Sequence[str], names: Mapping[str, str]) -> dict[tuple[str, str, bool], object]:
    """The prompt's echo and one headed column per (model, steered): where its text goes, streamed or final."""
    shown = prompt if len(prompt) <= ECHO_CHARS else f"{prompt[:ECHO_CHARS]}… ({len(prompt):,} characters in all)"
    st.markdown(f"**Prompt:** {shown}")
    keys = [(prompt, role, steered) for role in roles for steered in (False, True)]
    out = {}
    for col, key in zip(st.columns(len(keys)), keys):
        col.markdown(f"**{names[key[1]]}{' · steered' if key[2] else ''}**")
        out[key] = col
    return out


def intervention_note(spec: SteeringSpec, reference_label: str | None) -> str:
    """What was done, in the words of the mode that ran (ablation has no alpha)."""
    layers = f"layers {spec.layers[0]}–{spec.layers[-1]}"
    if spec.mode == "add":
        return f"add · {layers} · alpha {spec.alpha:g}"
    if spec.ablation == "affine":
        return (f"ablate (affine) · at {layers}, the component along layer {spec.layers[0]}'s direction set to "
                f"each model's own mean on {reference_label}")
    return f"ablate (project) · layer {spec.layers[0]}'s direction projected out at every layer"
