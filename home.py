"""The landing page (app.py routes to it): what the playground shows, one link per study, both models on one prompt."""
import streamlit as st

from analyses import RECORDS
from app_pages.ui.icons import HOME, PLAYGROUND, study_icon
from app_pages.ui.names import role_names
from app_pages.ui.pair_picker import current_pair, sidebar
from steering import SteeringError
from steering.generation import DecodingSettings, format_prompts, generate

st.set_page_config(page_title="Post-training playground", page_icon=HOME, layout="wide")
# the title and introduction first: a first start converts the demo pair for about a minute below them
st.title("How post-training reshapes a language model")
st.markdown(
    "Load a **base** model and its **post-trained** (instruct/chat) sibling, and look inside both side by side: "
    "compute a *truthfulness* or *refusal* direction per layer, add it or project it out during generation, "
    "transfer it from one model to the other, and see where facts are stored and how confidence is regulated. "
    "The methods follow Du et al., *How Post-Training Reshapes LLMs* (COLM 2025, arXiv:2504.02904)."
)
sidebar()
# the two replies come first, above the fold at 900 px: they are the page's first demonstration
BASE_NOTE = ("A base model was never taught chat turns, so it continues the text, often echoing the turn "
             "markers: that difference is what post-training adds, and what the paper studies.")
pair = current_pair()
if pair is not None:
    st.subheader("Both models, same prompt")
    prompt = st.text_input("Prompt", "What is the capital of France?")
    chat = st.toggle("Use the chat template (as in the paper, for both models)", value=True)
    if st.button("Generate"):
        try:
            texts = format_prompts(pair.tokenizer, [prompt], chat)
            names = role_names(pair.name)
            for col, (role, model) in zip(st.columns(len(pair.models())), pair.models().items()):
                with col:
                    st.markdown(f"**{names[role]}**")
                    if role == "base" and chat:
                        st.caption(BASE_NOTE)
                    bar = st.progress(0.0, text=f"The {role} model is writing…")
                    reply = generate(model, pair.tokenizer, texts, decoding=DecodingSettings(max_new_tokens=40),
                                     progress=lambda done, total, bar=bar, role=role: bar.progress(
                                         done / total, text=f"The {role} model is writing… {done}/{total} tokens"))
                    bar.empty()
                    st.write(reply[0])
        except SteeringError as e:
            st.error(str(e))

st.caption(
    "The default **demo pair** is Google's pretrained Gemma 3 270M (installed from PyPI) and this project's own "
    "small LoRA fine-tune of it: good for showing the phenomena on a laptop, far from the paper's 7–13B pairs."
)

st.subheader("What you can look at")
st.page_link("app_pages/1_Playground.py", label="**Playground** — compute a direction, add it or project it out, "
             "transfer it; four generations side by side", icon=PLAYGROUND)
for study in RECORDS:  # every study, then the lab
    st.page_link(study.page, label=f"**{study.title}** — {study.one_line()}", icon=study_icon(study))
