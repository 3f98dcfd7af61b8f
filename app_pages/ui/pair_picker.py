"""What every page shares: the loaded pair (cached across pages and reruns) and the sidebar that picks it.

A sub-package of pages/, so Streamlit does not list it as a page."""
from __future__ import annotations

import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import streamlit as st

from steering import AdapterMissingError, ModelPair, SteeringError, load_pair, pair_names, pair_spec
from steering.pairs import prepare_sources
from steering.registry import BETWEEN, checkpoint_names, stage_names_of
from steering.stages import stage_pair_name

CUSTOM = "custom (local folder, .gguf file or HF cache)"
TWO_STAGES = "two stages of the demo road…"


@dataclass(frozen=True)
class PairRequest:
    name: str | None
    base: str | None = None
    post: str | None = None
    dtype: str = "auto"
    quantization: str = "none"
    device: str = "auto"
    base_only: bool = False


@st.cache_resource(show_spinner=False, max_entries=2)
def _load(request: PairRequest) -> ModelPair:
    return load_pair(request.name, base=request.base, post=request.post, dtype=request.dtype,
                     quantization=request.quantization, device=request.device, base_only=request.base_only)


class _FirstStart:
    """The one-time conversions (GGUF -> safetensors, adapter merge) shown in the page's main area as they happen,
    with the time so far: on a first visit they take minutes, and a collapsed sidebar note is easy to miss."""

    def __init__(self, slot, label: str):
        self.slot, self.label, self.box, self.clock, self.started = slot, label, None, None, time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.box is None:
            self.box = self.slot.status(f"Preparing {self.label} for its first use: a one-time conversion that "
                                        "takes about a minute on a 2-core CPU (later starts take seconds)",
                                        expanded=True)
            self.clock = self.box.empty()
        self.box.write(f"{time.perf_counter() - self.started:.0f} s · {message}")
        self.tick()

    def tick(self) -> None:
        """The time so far, rewritten every second while a step runs (between steps it used to stand still)."""
        if self.clock is not None:
            self.clock.markdown(f"**{time.perf_counter() - self.started:.0f} s** so far")

    def done(self) -> None:
        self.slot.empty()


def _prepare_with_clock(prepare: Callable[[Callable[[str], None]], object], report: Callable[[str], None],
                        first_start: _FirstStart) -> object:
    """prepare(report) in a worker thread, its messages passed on and the first start's clock ticking every second
    from this (the script's) thread, which alone writes to the page."""
    messages: queue.SimpleQueue[str] = queue.SimpleQueue()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(prepare, messages.put)
        while True:
            finished, _ = wait([future], timeout=1.0)
            while not messages.empty():
                report(messages.get())
            first_start.tick()
            if finished:
                return future.result()  # its error, if any, after the messages that came before it


def _load_with_status(request: PairRequest, main_slot) -> ModelPair:
    label = _label(request)
    first_start = _FirstStart(main_slot, label)
    start = time.perf_counter()
    with st.status(f"Loading {label}…", expanded=False) as status:
        try:  # conversions that happen once (GGUF, adapter merge) report their progress, outside the cache
            _prepare_with_clock(lambda report: prepare_sources(request.name, base=request.base, post=request.post,
                                                               base_only=request.base_only, report=report),
                                lambda message: (status.write(message), first_start(message)), first_start)
            pair = _load(request)
        except SteeringError:
            status.update(label=f"Could not load {label}", state="error")
            raise
        finally:
            first_start.done()
        status.update(label=f"{label} loaded in {time.perf_counter() - start:.1f} s", state="complete")
    return pair


def _load_or_base_alone(request: PairRequest, main_slot) -> ModelPair:
    try:
        return _load_with_status(request, main_slot)
    except AdapterMissingError as e:
        if request.base_only:
            raise
        st.warning(f"{e} Until then the app offers the base model alone.")
        return _load_with_status(PairRequest(**{**request.__dict__, "base_only": True}), main_slot)


def _demo_road() -> list[str]:
    try:
        return stage_names_of(pair_spec("demo"))
    except SteeringError:
        return []


def _loaded_name() -> str | None:
    """The loaded pair's name, or on a session's first run the one about to load (a reload's address)."""
    loaded = st.session_state.get("pair_loaded_request") or st.session_state.get("pair_request")
    return None if loaded is None else loaded.name


def _loaded_stages(road: list[str]) -> tuple[str, str]:
    """The two stages of the loaded road pair ('demo@step108..dpo'), else the road's two ends."""
    first, _, second = (_loaded_name() or "").partition("@")[2].partition(BETWEEN)
    return (first, second) if first in road and second in road else (road[0], road[-1])


def _pick() -> PairRequest:
    road = _demo_road()
    demo = "demo" in pair_names()  # a registry without the demo pair (a user's own, a test's) has no road here
    names = (pair_names() + ([f"demo@{c}" for c in checkpoint_names("demo")] if demo else [])
             + ([TWO_STAGES] if road else []) + [CUSTOM])
    loaded = _loaded_name()
    shown = TWO_STAGES if loaded and BETWEEN in loaded else loaded
    # the picker opens on what is loaded (on another page it used to read "demo" over a loaded road pair)
    name = st.selectbox("Model pair", names, index=names.index(shown) if shown in names else 0, help="A registered base / post-trained pair, "
                        "a checkpoint of the demo pair's post-training (paired with the base), any two stages of "
                        "it, or your own sources.")
    base = post = None
    if name == TWO_STAGES:
        first_loaded, second_loaded = _loaded_stages(road)
        first = st.selectbox("First stage (as the base)", road, index=road.index(first_loaded))
        second = st.selectbox("Second stage (as the post-trained model)", road, index=road.index(second_loaded))
        name = stage_pair_name("demo", first, second)
        st.caption(f"Every page compares {first} (as the base) with {second}: `{name}`.")
    elif name == CUSTOM:
        base = st.text_input("Base model", placeholder="org/model, /path/to/folder or model.gguf")
        post = st.text_input("Post-trained model", placeholder="org/model-instruct")
        name = None
    else:
        st.caption(pair_spec(name).description)
    with st.expander("Precision and device"):
        dtype = st.selectbox("dtype", ["auto", "bfloat16", "float16", "float32"],
                             help="auto: bfloat16 on a GPU, float32 on the CPU. Gemma overflows in float16.")
        quantization = st.selectbox("quantization", ["none", "8bit", "4bit"], help="bitsandbytes; NF4 for 4-bit.")
        device = st.selectbox("device", ["auto", "cpu", "cuda"], help="auto: all GPUs when there are any.")
    # a base without a post-trained model loads alone, as on the command line (--base without --post)
    return PairRequest(name, base or None, post or None, dtype, quantization, device,
                       base_only=bool(base and not post))


def sidebar() -> None:
    """The pair picker. The demo pair loads on first visit; another pair loads when 'Load pair' is pressed. A pair
    that fails to load leaves the one already loaded in place (with the error above it). A first start's one-time
    conversions show in the main area."""
    main_slot = st.empty()
    with st.sidebar:
        st.subheader("Model pair")
        if "pair_request" not in st.session_state:  # a new session (first visit or a browser reload): the address's
            st.session_state["pair_request"] = _from_address()
        request = _pick()
        if st.button("Load pair", type="primary", width="stretch"):
            st.session_state["pair_request"] = request
            st.session_state.pop("pair_load_error", None)
        active = st.session_state["pair_request"]
        try:
            pair = _load_or_base_alone(active, main_slot)
        except SteeringError as e:
            kept = st.session_state.get("pair_loaded_request")
            from_address = active.name not in (None, "demo") and st.query_params.get(ADDRESS_KEY) == active.name
            if kept is None and from_address:  # a reload on an address whose pair fails: the demo pair, saying so
                st.session_state[FROM_ADDRESS_NOTE] = (f"The page was reloaded with {active.name}, which cannot be "
                                                       f"loaded ({e}): the demo pair is loaded instead.")
                st.session_state["pair_request"] = active = PairRequest("demo")
                pair = _load_or_base_alone(active, main_slot)
            elif kept is None or kept == active:
                st.error(str(e))
                st.session_state["pair"] = None
                return
            else:
                st.session_state["pair_load_error"] = f"{e} The loaded pair, {_label(kept)}, stays in use."
                st.session_state["pair_request"] = active = kept
                pair = _load_or_base_alone(kept, main_slot)
        if st.session_state.get("pair_load_error"):
            st.error(st.session_state["pair_load_error"])
        if st.session_state.get(FROM_ADDRESS_NOTE) and active == PairRequest("demo"):
            st.warning(st.session_state[FROM_ADDRESS_NOTE])
        st.session_state["pair_loaded_request"] = active
        st.session_state["pair"] = pair
        _to_address(active)
        _describe(pair)


ADDRESS_KEY = "pair"  # the loaded pair's name in the page's address, so a browser reload keeps it
FROM_ADDRESS_NOTE = "pair_address_note"


def _from_address() -> PairRequest:
    """The pair a new session starts on: the one named in the address (?pair=demo@step108..dpo), else the demo pair;
    where the address names one that cannot be restored, the demo pair with a note saying so."""
    named = st.query_params.get(ADDRESS_KEY)
    if not named or named == "demo":
        return PairRequest("demo")
    registered = named.partition("@")[0]
    if named != CUSTOM_IN_ADDRESS and registered in pair_names():
        return PairRequest(named)
    what = ("a pair of your own sources, which the address cannot hold" if named == CUSTOM_IN_ADDRESS
            else f"'{named}', which is not a registered pair")
    st.session_state[FROM_ADDRESS_NOTE] = (f"The page was reloaded with {what}: the demo pair is loaded instead. "
                                           "Pick yours again above.")
    return PairRequest("demo")


CUSTOM_IN_ADDRESS = "custom"


def _to_address(request: PairRequest) -> None:
    shown = request.name or CUSTOM_IN_ADDRESS
    if st.query_params.get(ADDRESS_KEY) != shown:
        st.query_params[ADDRESS_KEY] = shown


def _label(request: PairRequest) -> str:
    return request.name or (f"{request.base} | {request.post}" if request.post else f"{request.base} (alone)")


def _describe(pair: ModelPair) -> None:
    s = pair.settings
    st.markdown(
        f"**{pair.name}**  \n{pair.n_layers} layers · d_model {pair.d_model}  \n"
        f"device **{s.device}** · dtype **{s.dtype}**  \nquantization **{s.quantization or 'none'}** · "
        f"memory **{pair.memory_bytes() / 2**30:.2f} GiB**"
    )
    if pair.post is None:
        st.caption("Base model only: the post-trained model is not available.")


def current_pair() -> ModelPair | None:
    """The pair the sidebar loaded, or None (with a note in the page) when none is loaded."""
    pair = st.session_state.get("pair")
    if pair is None:
        st.info("No model pair is loaded: pick one in the sidebar.")
    return pair
