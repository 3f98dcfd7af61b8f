"""The Playground's forms: one block per steering (where its direction comes from, how it steers, and at which
positions), decoding. Each returns a typed choice; the page only calls them and runs what they describe.

Widget keys: steering 1 keeps the page's historical keys (`pg_source`, `pg_alpha`, ...), so links from other pages
and saved habits still work; steering N > 1 adds `_{N-1}` (`pg_source_1`, `pg_alpha_1`, `pg_positions_1`).
`hand_over_study_direction` is the one way another page preselects a direction here."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import streamlit as st

from analyses.contrast_sets import builtin_sets, decode_upload, parse_prompt_list
from analyses.study_directions import directions_for
from app_pages.ui.checked import Checks
from steering import Direction, SteeringError
from steering.composition import POSITION_KINDS, PositionRule, parse_offsets
from steering.control_vector import from_control_vector
from steering.direction_cache import DirectionCache
from steering import model_view
from steering.generation import ABLATION_HELP, MAX_ALPHA, DecodingSettings, SteeringSpec, alpha_warning
from steering.pairs import ModelPair
from steering.playground import ContrastPrompts, directions_for_pair

SOURCES = ["Built-in contrast set", "Your two lists", "A direction file", "The direction cache",
           "From a study's result"]
STUDY_SOURCE = SOURCES[4]
NOTHING_CHOSEN = {"A direction file": "Upload a direction file first.",
                  "The direction cache": "Choose a cached direction first.",
                  "From a study's result": "Choose a study's direction first."}
COUNT_KEY = "pg_n_steerings"
MAX_FORMS = 4  # more directions at once than a page can show side by side; the library takes up to 16


def key(name: str, i: int) -> str:
    """Steering i's widget key (i from 0)."""
    return f"pg_{name}" if i == 0 else f"pg_{name}_{i}"


def hand_over_study_direction(index: int) -> None:
    """Preselect, for the Playground's first steering, the study direction at `index` of
    analyses.study_directions.directions_for(pair) (the Diffing page's "steer with this difference")."""
    st.session_state[key("source", 0)] = STUDY_SOURCE
    st.session_state[key("study_direction", 0)] = index


@dataclass
class SteeringChoice:
    """What one steering block asks for: a direction (computed from `contrast`, or `loaded`), read from model
    `read_from`, how to steer with it, and at which positions (`rule`; None when it could not be read, the reason
    shown and the run blocked). `error`: the source could not be read (already shown)."""

    source: str
    contrast: ContrastPrompts | None
    loaded: tuple[str, Direction] | None
    error: str | None
    read_from: str
    mode: str
    ablation: str
    layers: tuple[int, ...]
    alpha: float
    rule: PositionRule | None

    def directions(self, pair: ModelPair, progress: Callable[[int, int], None] | None = None) -> dict[str, Direction]:
        if self.contrast is None:
            if self.loaded is None:
                raise SteeringError(NOTHING_CHOSEN[self.source])
            return {"loaded": self.loaded[1]}
        return directions_for_pair(pair, self.contrast, progress=progress)

    def spec(self, directions: Mapping[str, Direction]) -> SteeringSpec:
        if self.rule is None:
            raise SteeringError("Give this steering's positions first.")
        direction = directions.get(self.read_from, next(iter(directions.values())))
        return SteeringSpec(direction, self.mode, self.layers, float(self.alpha), self.rule.positions(),
                            ablation=self.ablation)

    def label(self, names: Mapping[str, str]) -> str:
        """Where the direction came from, for captions."""
        if self.contrast is None:
            return self.loaded[0] if self.loaded else ""
        return f"from {self.contrast.name} read from the {names[self.read_from].lower()} model"


def steering_count() -> int:
    """How many steering blocks the page shows (steering_buttons changes it)."""
    return min(max(int(st.session_state.get(COUNT_KEY, 1)), 1), MAX_FORMS)


def _change_count(by: int) -> None:
    st.session_state[COUNT_KEY] = min(max(steering_count() + by, 1), MAX_FORMS)


def steering_buttons(n: int) -> None:
    """Under the blocks: add one, or remove the last (a callback, so the rerun draws the new count)."""
    cols = st.columns([1, 1, 3])
    cols[0].button("Add another direction", key="pg_add_steering", on_click=_change_count, args=(1,),
                   disabled=n >= MAX_FORMS,
                   help="Steer with several directions at once, each with its own layers, strength and mode; they "
                        "are applied in the order shown.")
    if n > 1:
        cols[1].button("Remove the last direction", key="pg_remove_steering", on_click=_change_count, args=(-1,))


def steering_form(pair: ModelPair, i: int, checks: Checks, names: Mapping[str, str]) -> SteeringChoice:
    """Steering block i: its direction's source, then mode, layers and strength, then its positions."""
    roles = list(pair.models())
    source = st.radio("Where the direction comes from", SOURCES, horizontal=True, key=key("source", i))
    contrast, loaded, error = None, None, None
    try:
        if source in NOTHING_CHOSEN:
            loaded = {"A direction file": _uploaded, "The direction cache": _cached,
                      STUDY_SOURCE: _from_study}[source](pair, i)
        else:
            name, positive, negative, as_chat = (_builtin_set if source == SOURCES[0] else _typed_lists)(i)
            position = int(checks.number(st, "Token position, counted from the end of the prompt (-1 = last token)",
                                         -1, lo=-10_000, hi=-1, step=1, key=key("position", i),
                                         what="The token position"))
            contrast = ContrastPrompts(name, tuple(positive), tuple(negative), as_chat, position)
    except SteeringError as e:
        error = str(e)
        st.error(error)
    read_from = st.radio("Read the direction from", roles, index=roles.index("post") if "post" in roles else 0,
                         format_func=names.get, horizontal=True, key=key("read_from", i), disabled=contrast is None,
                         help="The post-trained model's own direction is the default; pick the other model to "
                              "transfer a direction across the pair.")
    mode, ablation, layers, alpha = _intervention(pair.n_layers, i, checks)
    rule = positions_form(checks, i)
    return SteeringChoice(source, contrast, loaded, error, read_from, mode, ablation, layers, alpha, rule)


def _intervention(n: int, i: int, checks: Checks) -> tuple[str, str, tuple[int, ...], float]:
    cols = st.columns([1, 2, 1])
    mode = cols[0].radio("Mode", ["add", "ablate"], key=key("mode", i),
                         help="add: alpha × unit direction × typical residual norm. ablate: remove what the model "
                              "holds along the direction, in one of two ways (below).")
    # affine by default: on the demo pair Arditi's projection turns every text into one repeated token (the refusal
    # study measured a harmless KL of 10-40 nats), while affine keeps it readable
    ablation = cols[0].radio("Ablation", list(ABLATION_HELP), key=key("ablation", i), disabled=mode != "ablate",
                             help=" ".join(ABLATION_HELP.values()))
    if mode == "ablate":
        cols[0].caption(ABLATION_HELP[ablation])
    # one layer by default (a range slider with equal ends reads "9 9"); a range or all layers on request
    span = cols[1].radio("Layers", ["one", "a range", "all"], horizontal=True, key=key("layer_span", i),
                         help="add: where the vector is added. ablate, affine: where the component is set; ablate, "
                              "project: whose layer's vector is projected out at every layer.")
    if span == "a range":
        first, last = cols[1].select_slider("Layers, first to last", options=list(range(n)),
                                            value=(n // 2, min(n - 1, n // 2 + 2)), key=key("layers", i))
    else:
        first = last = cols[1].select_slider("Layer", options=list(range(n)), value=n // 2, key=key("layer", i),
                                             disabled=span == "all")
    alpha = checks.number(cols[2], "alpha (× residual norm)", 0.1, lo=-MAX_ALPHA, hi=MAX_ALPHA, step=0.05,
                          key=key("alpha", i), disabled=mode == "ablate", what="alpha", check=mode == "add")
    if mode == "add" and alpha is not None and -MAX_ALPHA <= alpha <= MAX_ALPHA and alpha_warning(alpha):
        cols[2].warning(alpha_warning(alpha))
    layers = tuple(range(n)) if span == "all" else tuple(range(first, last + 1))
    return mode, ablation, layers, alpha


def positions_form(checks: Checks, i: int = 0) -> PositionRule | None:
    """The tokens steering i writes (every block its own, prompt and generated by default); None (with the reason
    shown, and the run blocked) when it cannot be read."""
    cols = st.columns([2, 1, 1])
    kind = cols[0].radio("Positions", list(POSITION_KINDS), key=key("positions", i), format_func=POSITION_KINDS.get,
                         horizontal=True, help="The tokens this direction steers; each direction has its own. Offsets "
                                               "from the end of the prompt: -1 is the last prompt token, 0 the first "
                                               "generated one.")
    start = int(checks.number(cols[1], "From position", 0, lo=-10_000, hi=10_000, step=1,
                              key=key("positions_from", i), disabled=kind != "from", check=kind == "from",
                              what="The first steered position"))
    text = cols[2].text_input("Token positions", "-1, 0", key=key("positions_tokens", i), disabled=kind != "tokens",
                              help="Offsets separated by commas, e.g. -1, 0, 2.")
    try:
        return PositionRule(kind, start=start, tokens=parse_offsets(text) if kind == "tokens" else ())
    except SteeringError as e:
        cols[2].error(str(e))
        checks.problems.append(str(e))
        return None


def decoding_form(checks: Checks, top_p: float = DecodingSettings.top_p) -> DecodingSettings:
    with st.expander("Decoding"):
        cols = st.columns(4)
        greedy = cols[0].radio("Decoding", ["greedy", "sampling"], key="pg_decoding") == "greedy"
        seed = int(cols[1].number_input("Seed", value=0, step=1, key="pg_seed", disabled=greedy))
        temperature = checks.number(cols[2], "Temperature", 0.8, lo=0.05, hi=2.0, key="pg_temp", disabled=greedy)
        max_new = int(checks.number(cols[3], "Max new tokens", 32, lo=1, hi=256, step=1, key="pg_max_new"))
        bf16 = st.checkbox(BF16_LABEL, key="pg_bf16", disabled=not model_view.bf16_matmul_is_fast(), help=BF16_HELP)
    return DecodingSettings(max_new_tokens=max_new, greedy=greedy, seed=seed, temperature=temperature, top_p=top_p,
                            unembedding="bfloat16" if bf16 and model_view.bf16_matmul_is_fast() else "plain")


BF16_LABEL = "Faster logits in bfloat16 (tokens may differ from float32)"
BF16_HELP = ("Most of a decoding step is the 262k-token unembedding; this processor multiplies bfloat16 in hardware, "
             "so computing the logits in bfloat16 makes a step faster. Rounding to bfloat16 can change which token "
             "wins a close call, so the texts may differ from the float32 ones. Off where the processor lacks it.")


def set_decoding(decoding: DecodingSettings) -> None:
    """Put a decoding (a card's) into the decoding form's fields, before they are drawn."""
    st.session_state.update({"pg_decoding": "greedy" if decoding.greedy else "sampling", "pg_seed": decoding.seed,
                             "pg_temp": decoding.temperature, "pg_max_new": decoding.max_new_tokens,
                             "pg_bf16": decoding.unembedding == "bfloat16"})


# the direction's sources ----------------------------------------------------------------------------------------

def _builtin_set(i: int) -> tuple:
    sets = builtin_sets()
    chosen = sets[st.selectbox("Contrast set", list(sets), key=key("set", i))]
    st.caption(f"{chosen.about} {len(chosen.positive)} {chosen.positive_label} vs "
               f"{len(chosen.negative)} {chosen.negative_label} prompts.")
    return chosen.name, chosen.positive, chosen.negative, chosen.chat


def _typed_lists(i: int) -> tuple:
    left, right = st.columns(2)
    pos_text = left.text_area("Positive side (one per line, or CSV with a 'prompt' column)", key=key("pos", i))
    pos_file = left.file_uploader("…or upload it", type=["txt", "csv"], key=key("pos_file", i))
    neg_text = right.text_area("Negative side", key=key("neg", i))
    neg_file = right.file_uploader("…or upload it", type=["txt", "csv"], key=key("neg_file", i))
    pos_src = decode_upload(pos_file.getvalue(), pos_file.name) if pos_file else pos_text
    neg_src = decode_upload(neg_file.getvalue(), neg_file.name) if neg_file else neg_text
    as_chat = st.toggle("Read these lists through the chat template (instructions)", key=key("lists_chat", i))
    return ("custom", _prompts(pos_src, "positive list", pos_file), _prompts(neg_src, "negative list", neg_file),
            as_chat)


def _prompts(text: str, what: str, upload) -> list[str]:
    """A side's prompts; an uploaded .csv is read as a CSV (its first row a header), anything else by the list rule."""
    csv_file = upload is not None and upload.name.lower().endswith(".csv")
    return parse_prompt_list(text, what, csv_file=csv_file) if text.strip() else []


def _described(name: str, direction: Direction) -> str:
    return name if direction.info.dataset == name else f"{name} (dataset {direction.info.dataset})"


def _uploaded(pair: ModelPair, i: int) -> tuple[str, Direction] | None:
    upload = st.file_uploader("Direction file: a .safetensors written by this project, or a llama.cpp control "
                              "vector (.gguf)", type=["safetensors", "gguf"], key=key("dir_file", i))
    if upload is None:
        return None
    data = upload.getvalue()
    direction = (from_control_vector(data, pair.n_layers, upload.name) if upload.name.lower().endswith(".gguf")
                 else Direction.from_bytes(data, upload.name))
    return _described(upload.name, direction), direction


def _cached(pair: ModelPair, i: int) -> tuple[str, Direction] | None:
    entries = [(p, m) for p, m in DirectionCache().entries() if m["n_layers"] == pair.n_layers
               and m["d_model"] == pair.d_model]
    if not entries:
        st.info(f"No cached direction has this pair's shape ({pair.n_layers} layers × {pair.d_model} dims) yet.")
    labels = [f"{m['model']} · {m['dataset']} · position {m['position']} · {m['created_at']}" for _, m in entries]
    pick = st.selectbox("Cached direction (same shape as this pair)", range(len(entries)),
                        format_func=lambda j: labels[j], key=key("cached", i))
    return None if pick is None else (labels[pick], Direction.load(entries[pick][0]))


def _from_study(pair: ModelPair, i: int) -> tuple[str, Direction] | None:
    found = directions_for(pair)
    if not found:
        st.info("No study has stored a result with a direction for this pair yet: run one on its page, or "
                "`python -m analyses <study>`.")
    pick = st.selectbox("Direction from a study's stored result (study · field · model · date)", range(len(found)),
                        format_func=lambda j: found[j][0], key=key("study_direction", i))
    return None if pick is None else (_described(*found[pick]), found[pick][1])

