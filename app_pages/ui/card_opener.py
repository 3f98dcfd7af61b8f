"""Opening a steering card in the Playground: the upload checked like any file, refused on another pair (naming
both), and, when newly opened, its prompts and decoding put into the page's fields so Generate runs it exactly."""
from __future__ import annotations

import streamlit as st

from app_pages.ui.steering_form import set_decoding
from steering import SteeringError
from steering.atomic import sha256
from steering.card import SteeringCard, read_card_zip
from steering.composition import describe
from steering.pairs import ModelPair

DIGEST_KEY = "pg_card_digest"


def card_opener(pair: ModelPair) -> tuple[str, SteeringCard] | None:
    """(file name, card) while a valid card of this pair is uploaded; None otherwise (an error shown if it is bad)."""
    upload = st.file_uploader("Open a steering card (the .zip this page exports)", type=["zip"], key="pg_card_file",
                              help="Restores the card's steerings, prompts and decoding exactly; remove the file "
                                   "to steer by hand again.")
    if upload is None:
        st.session_state.pop(DIGEST_KEY, None)
        return None
    data = upload.getvalue()
    try:
        card = read_card_zip(data, upload.name)
        card.check_pair(pair)
    except SteeringError as e:
        st.error(str(e))
        return None
    digest = sha256(data)
    if st.session_state.get(DIGEST_KEY) != digest:  # opened now: its prompts and decoding fill the fields once
        st.session_state[DIGEST_KEY] = digest
        st.session_state["pg_prompts"] = "\n".join(card.prompts)
        st.session_state["pg_chat"] = card.chat
        set_decoding(card.decoding)
    return upload.name, card


def show_card(name: str, card: SteeringCard) -> None:
    """The opened card's steerings, in the order they are applied."""
    st.markdown(f"**Steering with the card {name}**, made with version {card.project_version} on "
                f"{card.created_at}:")
    for i, entry in enumerate(card.steerings, start=1):
        info = entry.spec.direction.info
        st.markdown(f"{i}. {describe(entry.spec)} · direction {entry.label or info.dataset} ({info.method}, "
                    f"read from {entry.read_from or 'a loaded file'})")
    if card.calibration is not None and card.calibration.get("chosen") is not None:
        st.caption(f"Calibrated setting recorded in the card: {card.calibration['chosen']}")
