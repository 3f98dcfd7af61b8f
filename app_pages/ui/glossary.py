"""One-line glosses of the field's shorthand, shown where a page first uses it (a reader new to the field meets
"KL" or "ECE" in a chart title before any explanation)."""
from __future__ import annotations

import streamlit as st

GLOSSES = {
    "KL": "KL = Kullback–Leibler divergence, in nats: how far one next-token distribution is from another (0 = the "
          "same)",
    "ECE": "ECE = expected calibration error: the gap between how confident a model is and how often it is right",
    "IoU": "IoU = intersection over union of two sets (1 = the same neurons)",
    "resid": "resid = the residual stream, the running sum each layer reads from and writes to",
    "affine": "affine ablation = the component along the direction set to its mean on harmless prompts, instead "
              "of removed",
    "overshoot": "a value above 1 overshoots: the patched run is more sure of the answer than the clean run itself",
}


def gloss(*terms: str) -> None:
    """A caption glossing `terms`, for the top of a page that uses them."""
    st.caption("; ".join(GLOSSES[t] for t in terms) + ".")
