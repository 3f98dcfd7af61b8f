"""The Playground's result: the caption of each steering that ran, and the downloads (the first direction, its
control vector, the generations, the steering card)."""
from __future__ import annotations

import json
from collections.abc import Mapping

import streamlit as st

from app_pages.ui.generations import intervention_note
from app_pages.ui.playground_run import PlaygroundRun
from steering import SteeringError
from steering.card import card_zip
from steering.composition import PositionRule
from steering.control_vector import to_control_vector
from steering.pairs import ModelPair


def steering_captions(run: PlaygroundRun, names: Mapping[str, str]) -> None:
    """One line per steering: what it did, where, and where its direction came from."""
    steerings = run.composition.steerings
    for i, (spec, source) in enumerate(zip(steerings, run.sources), start=1):
        norms = spec.direction.resid_norms
        norm_note = (f" Typical residual norm at layer {spec.layers[0]}: {float(norms[spec.layers[0]]):,.0f}, so "
                     f"alpha {spec.alpha:g} adds a vector of norm {spec.alpha * float(norms[spec.layers[0]]):,.0f} "
                     "there." if norms is not None and spec.mode == "add" else "")
        number = f"Steering {i} of {len(steerings)}: " if len(steerings) > 1 else ""
        transfer = " Steering the other model than the one the direction was read from is a transfer." if i == 1 else ""
        st.caption(f"{number}{intervention_note(spec, run.reference_label(i - 1))} · positions: "
                   f"{PositionRule.of(spec.positions).label()} · direction {source.label}.{transfer}{norm_note}")
    if run.card_name:
        agreement = run.agreement()
        same = "" if agreement is None else (
            f" All {agreement[1]} texts are the ones it recorded." if agreement[0] == agreement[1] else
            f" {agreement[1] - agreement[0]} of {agreement[1]} texts differ from the ones it recorded: on another "
            "machine or device a greedy choice between two near-equal tokens can go the other way.")
        st.caption(f"Restored from the steering card {run.card_name}.{same}")


def downloads(run: PlaygroundRun, pair: ModelPair) -> None:
    st.subheader("Downloads")
    cols = st.columns(4)
    first = run.first
    cols[0].download_button("Direction (.safetensors)", first.direction.to_bytes(), "direction.safetensors",
                            help="The first steering's direction; the JSON metadata is inside the file too.")
    cols[0].download_button("Its JSON sidecar", json.dumps(first.direction.metadata(), indent=2) + "\n",
                            "direction.json")
    if first.mode != "add":
        cols[1].caption("Control vectors are for 'add'.")
    else:
        try:
            control_vector = to_control_vector(first.direction, list(first.layers), first.alpha,
                                               pair.base.config.model_type)
            cols[1].download_button("llama.cpp control vector (.gguf)", control_vector, "control_vector.gguf",
                                    help="direction.N in llama.cpp is added to the output of its layer N, i.e. our "
                                         "resid_pre.(N+1); scaled by the current alpha; llama.cpp steers every "
                                         "token.")
        except SteeringError as e:
            cols[1].caption(f"No control vector: {e}")
    cols[2].download_button("Generations with settings (.json)", json.dumps(run.generations_json(pair.name), indent=2),
                            "generations.json")
    try:
        cols[3].download_button("Steering card (.zip)", card_zip(run.card(pair)), "steering-card.zip",
                                key="pg_card_zip",
                                help="Everything to reproduce this steering: the vectors, both models' fingerprints, "
                                     "provenance, the generations before and after, a readable page and a script. "
                                     "Open it again at the top of this page.")
    except SteeringError as e:
        cols[3].caption(f"No steering card: {e}")
