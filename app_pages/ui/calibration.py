"""The Playground's calibration panel: for the direction in use, effect against damage over layers x strengths,
one line per layer, and the setting the rule picks within the damage budget, with its reason.

    calibration_panel(pair, direction, role_names)     # one call from the page, inside its own expander
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import altair as alt
import pandas as pd
import streamlit as st
import torch

from app_pages.ui.checked import Checks
from steering import Direction, SteeringError, model_view
from steering.calibration import Behaviour, Calibration, DamageBudget, calibrate, calibrate_ablation
from steering.generation import format_prompts
from steering.refusal_data import refusal_study_split
from steering.playground import mean_residuals, reference_prompts
from steering.registry import ASSETS

KEY = "pg_cal"
BEHAVIOURS = {"refusal": "refusal (log-odds of the refusal tokens, and the refusal rate)",
              "truth": "truth (P(TRUE) − P(FALSE) after ' This statement is:')",
              "tokens": "your two token sets (log P(towards) − log P(away))"}
STEERINGS = {"add": "add the direction at one layer",
             "affine": "affine ablation from a layer on (Marshall et al.)"}
DAMAGES = {"kl": "KL on neutral text", "perplexity_ratio": "perplexity ÷ unsteered", "repetition": "repetition"}
TRUTH_PROMPTS = ("The city of Paris is in France. This statement is:\nThe city of Tokyo is in Brazil. This statement "
                 "is:\nThe city of Cairo is in Egypt. This statement is:\nThe city of Lima is in Norway. This "
                 "statement is:")


def _neutral_default() -> str:
    lines = [ln for ln in (ASSETS / "diffing" / "plain_text.txt").read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.startswith("#")]
    return "\n".join(lines[:8])


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _behaviour(kind: str, tokenizer, towards: str, away: str) -> Behaviour:
    if kind == "refusal":
        from analyses.refusal.scores import refusal_token_ids

        return Behaviour.refusal(refusal_token_ids(tokenizer))
    if kind == "truth":
        from analyses.truth_score import answer_token_ids

        return Behaviour.truth(*answer_token_ids(tokenizer))

    def ids(words: str, side: str) -> list[int]:
        found = [tokenizer(w, add_special_tokens=False).input_ids[:1] for w in words.replace(",", " ").split()]
        found = [i[0] for i in found if i and i[0] != tokenizer.unk_token_id]
        if not found:
            raise SteeringError(f"None of the {side} words is a token this tokenizer knows: type other words.")
        return found

    return Behaviour.tokens(ids(towards, "towards"), ids(away, "away"))


def frontier_chart(found: Calibration, damage: str = "kl") -> alt.Chart:
    """Effect against one damage measure, a line per layer through its strengths, the pick ringed, the budget's
    limit on that measure as a rule. Perplexity and repetition exist only where replies were generated, so those
    views draw only those settings; on KL every setting shows, a filled point where its replies were generated."""
    frame = found.frame()
    frame["replies"] = frame.generated.map({True: "generated", False: "not generated"})
    if damage != "kl":
        frame = frame[frame.generated]
    limit = {"kl": found.budget.max_kl, "perplexity_ratio": found.budget.max_perplexity_ratio,
             "repetition": found.budget.max_repetition}[damage]
    x = alt.X(f"{damage}:Q", title=DAMAGES[damage], scale=alt.Scale(type="symlog") if damage != "repetition"
              else alt.Scale(domain=[0, 1]))
    y = alt.Y("effect:Q", title=f"effect ({found.behaviour.unit}, {found.aim}d)")
    # a gradient legend: 18 or more layers as symbols would not fit beside a 320 px chart
    title = "first ablated layer" if found.steering == "affine" else "layer"
    color = alt.Color("layer:Q", scale=alt.Scale(scheme="viridis"), title=title)
    tooltip = ["layer", "alpha", "effect", "kl", "perplexity", "repetition", "refusal_rate", "replies", "example"]
    lines = alt.Chart(frame).mark_line().encode(x=x, y=y, color=color, detail="layer:N", order="alpha:Q")
    points = alt.Chart(frame).mark_point(size=40).encode(
        x=x, y=y, color=color, tooltip=tooltip,
        fill=alt.condition("datum.generated", color, alt.value("white")))
    picked = alt.Chart(frame[frame.picked]).mark_point(size=300, shape="circle", filled=False, color="red",
                                                       strokeWidth=2).encode(x=x, y=y, tooltip=tooltip)
    budget = alt.Chart(pd.DataFrame({damage: [limit]})).mark_rule(strokeDash=[4, 4], color="gray").encode(
        x=alt.X(f"{damage}:Q"))
    drawn = [lines, points, budget] + ([picked] if bool(frame.picked.any()) else [])
    return alt.layer(*drawn).properties(height=320)


def calibration_panel(pair, direction: Direction, role_names: Mapping[str, str]) -> Calibration | None:
    """The panel, in an expander of its own: settings, the Calibrate button, the frontier and the pick. Returns
    the calibration shown (at the budget set now), None when there is none for this direction."""
    with st.expander("Calibrate: which layer and strength? (effect against damage, measured)"):
        checks = Checks()
        roles = list(pair.models())
        cols = st.columns(3)
        role = cols[0].radio("Model", roles, index=roles.index("post") if "post" in roles else 0,
                             format_func=role_names.get, key=f"{KEY}_role")
        kind = cols[1].radio("Behaviour", list(BEHAVIOURS), format_func=BEHAVIOURS.get, key=f"{KEY}_behaviour")
        aim = cols[2].radio("Aim", ["raise", "lower"], key=f"{KEY}_aim",
                            help="raise: more of the behaviour (add the refusal direction); lower: less of it.")
        towards = away = ""
        if kind == "tokens":
            tcols = st.columns(2)
            towards = tcols[0].text_input("Towards: words whose first token the steering should make likelier",
                                          "Sure", key=f"{KEY}_towards")
            away = tcols[1].text_input("Away: words it should make less likely", "Sorry", key=f"{KEY}_away")
        pcols = st.columns(2)
        default_prompts = TRUTH_PROMPTS if kind == "truth" else "\n".join(refusal_study_split("harmless.txt",
                                                                                              "val")[:8])
        prompts = pcols[0].text_area("Held-out prompts (one a line), where the effect is read",
                                     default_prompts, key=f"{KEY}_prompts_{kind}")
        neutral = pcols[1].text_area("Neutral text (one a line, no chat template), where the KL is read",
                                     _neutral_default(), key=f"{KEY}_neutral")
        chat = kind != "truth" and st.toggle("Send the held-out prompts through the chat template", value=True,
                                             key=f"{KEY}_chat")
        n = pair.n_layers
        mcols = st.columns([2, 1])
        steering = mcols[0].radio("Steering", list(STEERINGS), format_func=STEERINGS.get, horizontal=True,
                                  key=f"{KEY}_steering")
        ablate = steering == "affine"
        if ablate and aim == "raise":
            st.caption("An ablation takes the direction's behaviour away: set Aim to lower to pick the setting that "
                       "stops it most within the budget.")
        source = int(checks.number(mcols[1], "Ablate the direction of layer", n // 2, lo=0, hi=n - 1, step=1,
                                   key=f"{KEY}_source", disabled=not ablate, check=ablate,
                                   what="The ablated direction's layer"))
        scols = st.columns([2, 2, 1])
        layers = scols[0].multiselect("First ablated layers" if ablate else "Layers", list(range(n)),
                                      default=list(range(0, n, max(1, n // 6))), key=f"{KEY}_layers")
        alphas_text = scols[1].text_input(
            "Strengths (the share of the way to the reference)" if ablate else "Strengths (alpha × residual norm)",
            "0.25, 0.5, 0.75, 1" if ablate else "0.05, 0.1, 0.2, 0.4",
            key=f"{KEY}_alphas" + ("_affine" if ablate else ""))
        max_new = int(checks.number(scols[2], "Greedy tokens", 8, lo=1, hi=64, step=1, key=f"{KEY}_tokens"))
        everywhere = st.toggle("Generate replies at every setting (slower: one more generation per layer)",
                               value=False, key=f"{KEY}_all",
                               help="Off: replies (perplexity, repetition, refusal rate) are generated only where "
                                    "the rule needs them to pick within this budget, and for the first frontier "
                                    "points beyond it.")
        bcols = st.columns(3)
        budget_values = (checks.number(bcols[0], "Budget: KL on neutral text at most", 0.1, lo=0.0, hi=1e6,
                                       key=f"{KEY}_kl", help="Arditi et al. keep candidates at KL ≤ 0.1."),
                         checks.number(bcols[1], "Budget: perplexity at most × unsteered", 3.0, lo=1.0, hi=1e6,
                                       key=f"{KEY}_ppl"),
                         checks.number(bcols[2], "Budget: repetition at most", 0.3, lo=0.0, hi=1.0,
                                       key=f"{KEY}_rep"))
        if st.button("Calibrate", key=f"{KEY}_run", disabled=not checks.ok,
                     help=None if checks.ok else " ".join(checks.problems)):
            try:
                alphas = [float(a) for a in alphas_text.replace(";", ",").split(",") if a.strip()]
                behaviour = _behaviour(kind, pair.tokenizer, towards, away)
                texts = format_prompts(pair.tokenizer, _lines(prompts), chat)
                model, budget = pair.models()[role], DamageBudget(*budget_values)
                common = dict(aim=aim, budget=budget, max_new_tokens=max_new,
                              generate="all" if everywhere else "frontier")
                bar = st.progress(0.0, text="Calibrating…")

                def step(done: int, total: int) -> None:
                    bar.progress(done / total, text=_step(done, total, len(layers)))

                if ablate:
                    vector, reference, about = _ablation_inputs(pair, role, direction, source)
                    found = calibrate_ablation(model, pair.tokenizer, vector, reference, behaviour, texts,
                                               _lines(neutral), layers=layers, strengths=alphas, about=about,
                                               progress=step, **common)
                else:
                    found = calibrate(model, pair.tokenizer, direction, behaviour, texts, _lines(neutral),
                                      layers=layers, alphas=alphas, progress=step, **common)
                st.session_state[KEY] = _digest(direction), found
                bar.empty()
            except SteeringError as e:  # first: a named error is also a ValueError
                st.error(str(e))
            except ValueError:
                st.error(f"Strengths must be numbers separated by commas, not {alphas_text!r}.")
        digest, found = st.session_state.get(KEY, (None, None))
        if found is None or digest != _digest(direction):  # none yet, or made for another direction
            st.caption("Every setting's effect and KL come from single forwards that run the layers below the "
                       "steered one once for all strengths; replies are generated where the rule needs them."
                       + _bfloat16_hint(pair.models()[role]))
            return None
        if checks.ok:
            found = found.with_budget(DamageBudget(*budget_values))  # a new budget re-picks, nothing is recomputed
        damage = st.radio("Damage on the x axis", list(DAMAGES), format_func=DAMAGES.get, horizontal=True,
                          key=f"{KEY}_damage")
        st.altair_chart(frontier_chart(found, damage), width="stretch")
        generated = sum(s.generated for s in found.settings)
        lines = "first ablated layer" if found.steering == "affine" else "layer"
        st.caption(f"Effect against damage, one line per {lines} through its strengths "
                   f"({', '.join(map(str, found.alphas))}); the ringed point is the pick, the dashed line the budget on this measure. Effect: the "
                   f"{found.behaviour.unit} at the first generated token, steered minus unsteered "
                   f"({found.baseline.score:.3g}), on {found.n_prompts} held-out prompts; KL on {found.n_neutral} "
                   f"neutral texts; perplexity and repetition of {found.max_new_tokens} greedy tokens, generated at "
                   f"{generated} of {len(found.settings)} settings (filled points; "
                   f"{'all' if found.generate == 'all' else 'where the rule needed them'}). KL on neutral "
                   "text says nothing about the steered topic, and perplexity falls on a loop (which repetition "
                   "catches): read the replies too (hover a point).")
        (st.success if found.pick.layer is not None else st.warning)(found.pick.reason)
        st.download_button("Frontier and pick (.json)", found.to_json(), "calibration.json", key=f"{KEY}_download")
        return found


def _ablation_inputs(pair, role: str, direction: Direction, source: int) -> tuple:
    """The direction of layer `source` and its reference c_l at every layer: the mean projection on it of the
    model's residual stream over harmless instructions (as the Playground's affine ablation reads it)."""
    with st.spinner("Reading the model's mean residual on harmless instructions (the ablation's reference)…"):
        texts, position = reference_prompts(pair, None)
        mean = mean_residuals(pair, texts, position, roles=[role])[role]  # the calibrated model's only
    vector = direction.at(source).float()
    unit = vector / vector.norm()
    info = direction.info
    about = {"model": info.model, "dataset": info.dataset, "method": f"{info.method}, layer {source}",
             "position": info.position}
    return vector, {layer: float(mean[layer] @ unit) for layer in range(mean.shape[0])}, about


def _bfloat16_hint(model) -> str:
    """Where this processor multiplies bfloat16 in hardware and the model runs in float32: how to go faster."""
    if next(model.parameters()).dtype != torch.float32 or not model_view.bf16_matmul_is_fast():
        return ""
    return (" This processor multiplies bfloat16 in hardware: loaded in bfloat16 (sidebar, Precision and device), "
            "the pair calibrates about 2.8× faster (README), with numbers rounded as bfloat16 rounds them.")


def _step(done: int, total: int, n_layers: int) -> str:
    return (f"Calibrating… layer {done} of {n_layers}" if done <= n_layers else
            f"Calibrating… generating replies, call {done - n_layers} of {total - n_layers}")


def _digest(direction: Direction) -> str:
    """Which direction a stored calibration was made for (its bytes: vectors and metadata)."""
    return hashlib.sha256(direction.to_bytes()).hexdigest()
