"""The post-training lab: every study along the road from base to SFT checkpoints to DPO, stage by stage."""
import json
from dataclasses import replace

import streamlit as st

from analyses import STUDY_NAMES, find_study
from analyses.lab import LAB, in_lab, merged, models_needed
from analyses.store import SHIPPED_ROOT, StoredResult, StoredResultError, config_json, read_result, shipped
from app_pages.ui.amplify import amplification_section
from app_pages.ui.glossary import gloss
from app_pages.ui.icons import study_icon
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.study_page import downloads, headline, study_result
from steering import SteeringError, memory, pair_spec
from steering.registry import stage_names_of

st.set_page_config(page_title="Post-training lab", page_icon=study_icon(LAB), layout="wide")
sidebar()
st.title("The post-training lab: from base to SFT to DPO, checkpoint by checkpoint")
st.caption("The paper compares the two end points. The demo pair's post-training is this project's own and keeps "
           "its checkpoints, so the lab runs every study at every stage on the way: the base, three SFT "
           "checkpoints, the SFT model, the DPO checkpoints and the DPO model, each paired with the base. The "
           "studies run with lighter settings than their pages' defaults (the same at every stage); the page of any "
           "study runs on a stage when you pick it in the sidebar (e.g. demo@step108, or two stages with "
           "'two stages of the demo road').")
gloss("KL", "ECE", "IoU", "resid")
pair = current_pair()
if pair is None:
    st.stop()
registered = pair.name.partition("@")[0]
try:
    road = stage_names_of(pair_spec(registered))
except SteeringError:
    road = []
if not road:
    st.info(f"The lab needs a pair that keeps its training checkpoints; {pair.name} does not. Pick the demo pair "
            "in the sidebar.")
    st.stop()

data = LAB.default_data(pair, LAB.Config())
per_model = memory.estimate(pair.folders["base"], pair.settings.dtype, pair.settings.quantization, n_models=1)
st.caption(f"A full run covers {len(data.stages)} stages ({', '.join(road)}): it loads {models_needed(data)} models "
           f"in all, one stage at a time beside the base, so two models are in memory at once (about "
           f"{2 * per_model.total_bytes / 2**30:.1f} GiB here, beside the pair the sidebar holds). To recompute "
           "one stage or one study, name it in the settings; the rest of the timeline stays as shipped.")



def shipped_road() -> StoredResult | None:
    """The shipped run of the whole road, read whole and verified: as this version of the lab, or, when only some
    studies have a newer version since it was shipped, as the lab version that wrote it (its stale panels are named
    on the page). For a pair made of stages of the road ('demo@step108..dpo') too: the lab runs from the registered
    pair's base, so a stage pair has no run of its own, but its road is the same one."""
    for record in (LAB, older_lab()):
        try:
            return read_result(SHIPPED_ROOT / LAB.name, record) if record is not None else None
        except StoredResultError:
            continue
    return None


def older_lab():
    """The lab record of the version that wrote the shipped run, when that differs from this one (None otherwise)."""
    try:
        version = json.loads((SHIPPED_ROOT / LAB.name / "manifest.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return replace(LAB, version=version) if isinstance(version, str) and version != LAB.version else None


def stale_studies(result) -> list[str]:
    """The studies whose version moved since the run was computed: their panels show the older method."""
    return [name for name, version in result.versions.items()
            if name in STUDY_NAMES and find_study(name).version != version]


AMPLIFY = "4 · Amplified differences between two stages of the road"
stored = study_result(LAB, pair, columns=3, quiet_when_missing=True)
if stored is None:
    stored = shipped_road()
    if stored is None:
        st.info("No result for these settings yet: press **Run** to compute it (a progress bar shows how far it is).")
        amplification_section(pair, AMPLIFY, key="lab_amp")  # it needs no lab run: only the road's stages
        st.stop()
    # one message: what is shown instead of a run of these settings, and what Run does
    shown = [f"Shown: the shipped run of the {registered} road, from its base through every stage."]
    if pair.name != registered:
        shown.append(f"The pair loaded, {pair.name}, is two points on it; Run computes the lab from its first stage.")
    stale = stale_studies(stored.result)
    if stale:
        versions = "; ".join(f"{stored.result.versions[n]} then, {find_study(n).version} now" for n in stale)
        shown.append(f"It predates the current version of {', '.join(stale)} ({versions}): those panels show the "
                     "older version's numbers, every other panel is current.")
    # the shipped manifest's seconds are the last step only (the study runs were cached); README: 5,257 s in all
    shown.append("Press **Run** to compute the whole lab again (about 88 min of study runs on 2 cores), or name one "
                 "study or stage in the settings.")
    st.info(" ".join(shown))
result = stored.result
if stored.manifest.get("config") != config_json(LAB.Config()):  # a part of the road: shown within the full run
    full = shipped(LAB, pair)
    if full is not None and full.stored is not None:
        result = merged(full.stored.result, result)
        st.caption("Shown: the shipped full run, with the stages and studies you recomputed taken from your run.")
charts = LAB.charts(result)

st.header("1 · Training")
if "losses" in charts:
    st.altair_chart(charts["losses"], width="stretch")
st.caption("The SFT's cross-entropy on its answers, then the DPO preference loss (log 2 = 0.693 where the policy "
           "equals the reference), train and validation, on one step axis. The dashed rule marks where the SFT "
           "ends and DPO begins; it is drawn in every panel below.")

st.header("2 · Every study along the road")
for study in dict.fromkeys(result.timeline["study"]):
    chart = charts.get(f"timeline_{study}")
    if chart is None:
        continue
    st.subheader(find_study(study).title if study in STUDY_NAMES else study.capitalize())
    st.altair_chart(chart, width="stretch")
    st.caption(in_lab(study).caption)

st.header("3 · Transfer along the road")
if "transfer" in charts:
    st.altair_chart(charts["transfer"], width="content")
    st.caption("Each stage steered with the base's refusal direction and with the final model's (its own residual "
               "norm scales the addition): added on held-out harmless prompts (does it make the stage refuse?) and "
               "ablated on held-out harmful ones (does it stop the stage refusing?). Where the final model's "
               "direction starts to steer is where the refusal direction appears; where the two sources part, "
               "forward and backward transfer differ.")
else:
    st.info("This run did not include transfer along the road (it needs the refusal study).")

amplification_section(pair, AMPLIFY, key="lab_amp")

headline(LAB, result)
with st.expander("The tidy table (stage, step, phase, study, metric, model, value)"):
    st.dataframe(result.timeline, width="stretch", hide_index=True)
    st.caption("'model' is the model (base, post = the stage), the direction of a transfer (base->post), the "
               "component of a tracing map (resid) or 'pair' for a number about both.")
downloads(LAB, result)
