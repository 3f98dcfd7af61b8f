"""The Diffing page's amplification section: generate from logits_B + alpha (logits_B - logits_A) between two
stages of the loaded pair's road (or its two models), and the refusal rate of the replies against alpha.

    amplification_section(pair)     # one call from the page (the Lab's road too, under its own header and key)
"""
from __future__ import annotations

import altair as alt
import streamlit as st

from app_pages.ui.checked import Checks
from app_pages.ui.names import role_names
from steering import SteeringError
from steering.amplify import amplification_rates, stage_model
from steering.generation import DecodingSettings, format_prompts
from steering.stages import stages

KEY = "diffing_amp"


def _choices(pair) -> dict[str, str]:
    """label -> what to load: the loaded pair's two models ('role:base'), and every stage of its road when it has
    one ('stage:sft')."""
    names = role_names(pair.name)
    out = {f"{names[r]} (loaded)": f"role:{r}" for r in pair.models()}
    try:
        out |= {f"stage {s.name}": f"stage:{s.name}" for s in stages(pair.name)}
    except SteeringError:  # a pair without a road: its two models only
        pass
    return out


def _model(pair, choice: str):
    kind, _, name = choice.partition(":")
    if kind == "role":
        return pair.models()[name]
    loaded = st.session_state.setdefault(f"{KEY}_models", {})
    if (pair.name, name) not in loaded:
        with st.spinner(f"Loading stage {name} beside the base…"):
            loaded[(pair.name, name)] = stage_model(pair, name)
    return loaded[(pair.name, name)]


def _default_prompts() -> str:
    from steering.posttrain.evaluate import evaluation_sets

    return "\n".join(evaluation_sets()["risky-looking harmless (SFT test split)"][:6])


def amplification_section(pair, header: str = "3 · Amplified differences: what B added, made frequent",
                          key: str = KEY) -> None:
    """The section under `header`; `key` prefixes its widgets and its result (one per page)."""
    st.header(header)
    st.caption("Replies generated from logits_B + α (logits_B − logits_A) (Goodfire's model-diff amplification): "
               "α = 0 is B itself; as α grows, what B does more than A (a refusal the SFT added, a change the DPO "
               "made) shows up more often. Each step is one batched forward of each model, each with its own KV "
               "cache; every α is a row of the same batch. Judged by the refusal phrase list.")
    checks = Checks()
    choices = _choices(pair)
    labels = list(choices)
    cols = st.columns(2)
    first = cols[0].selectbox("A (subtracted)", labels, index=0, key=f"{key}_a")
    second = cols[1].selectbox("B (amplified)", labels, index=1 if len(labels) > 1 else 0, key=f"{key}_b")
    prompts = st.text_area("Held-out prompts, one a line (default: risky-looking harmless requests the SFT never saw)",
                           _default_prompts(), key=f"{key}_prompts")
    pcols = st.columns(2)
    alphas_text = pcols[0].text_input("α values (0 and up)", "0, 1, 2, 4", key=f"{key}_alphas")
    max_new = int(checks.number(pcols[1], "Greedy tokens", 16, lo=1, hi=256, step=1, key=f"{key}_tokens"))
    if st.button("Amplify", key=f"{key}_run", disabled=not checks.ok):
        try:
            alphas = [float(a) for a in alphas_text.replace(";", ",").split(",") if a.strip()]
            lines = [ln.strip() for ln in prompts.splitlines() if ln.strip()]
            texts = format_prompts(pair.tokenizer, lines)
            model_a, model_b = _model(pair, choices[first]), _model(pair, choices[second])
            bar = st.progress(0.0, text="Generating…")
            rates, replies = amplification_rates(
                model_a, model_b, pair.tokenizer, texts, alphas, decoding=DecodingSettings(max_new_tokens=max_new),
                progress=lambda done, total: bar.progress(done / total, text=f"Generating… {done}/{total} replies"))
            bar.empty()
            replies["prompt"] = [lines[i % len(lines)] for i in range(len(replies))]
            st.session_state[key] = {"a": first, "b": second, "rates": rates, "replies": replies}
        except SteeringError as e:  # first: a named error is also a ValueError
            st.error(str(e))
        except ValueError:
            st.error(f"α values must be numbers separated by commas, not {alphas_text!r}.")
    found = st.session_state.get(key)
    if found is None:
        return
    st.altair_chart(alt.Chart(found["rates"]).mark_line(point=True).encode(
        x=alt.X("alpha:Q", title="α"), y=alt.Y("rate:Q", title="refusal rate", scale=alt.Scale(domain=[0, 1])),
        tooltip=["alpha", "rate", "hits", "n"]).properties(
        title=f"Refusals of B + α (B − A), A = {found['a']}, B = {found['b']}", height=260), width="stretch")
    st.caption(f"Share of the {int(found['rates'].n.iloc[0])} replies per α that start with a refusal phrase; the "
               "table has every reply. A rising rate means B refuses these prompts more than A does.")
    st.dataframe(found["replies"].rename(columns={"hit": "refusal"}), width="stretch")
