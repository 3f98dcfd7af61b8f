"""The app shell driven by Streamlit's AppTest: the pair picker, errors shown in the page, a first generation."""
import pytest
from streamlit.testing.v1 import AppTest
from tiny import save_tiny_pair

from app_pages.ui.pair_picker import PairRequest

TIMEOUT = 180
COLD_DEMO_TIMEOUT = 900  # on a fresh machine the first start converts the demo base (~2.5 min on 2 idle cores)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    return save_tiny_pair(tmp_path_factory.mktemp("app-pair"))


def _app(request: PairRequest | None = None, timeout: float = TIMEOUT) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=timeout)
    if request is not None:
        at.session_state["pair_request"] = request
    return at.run()


def test_a_missing_model_shows_one_message_and_the_page_stays_usable():
    at = _app(PairRequest(None, base="nobody/not-a-model", post="nobody/not-a-model-it"))
    assert not at.exception
    assert any("hf download nobody/not-a-model" in e.value for e in at.sidebar.error)
    assert at.title[0].value.startswith("How post-training")
    assert any("No model pair is loaded" in i.value for i in at.info)


def test_a_local_pair_loads_and_both_models_generate(tiny_dirs):
    at = _app(PairRequest(None, base=tiny_dirs[0], post=tiny_dirs[1]))
    assert not at.exception and not at.error
    assert any("layers" in m.value for m in at.sidebar.markdown)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception
    headers = [m.value for m in at.main.markdown if m.value.startswith("**")]
    assert headers == ["**Base**", "**Post-trained**"]
    # the base's reply is explained in one line, and both replies come before the list of pages (above the fold)
    assert [c.value for c in at.main.caption if "never taught chat turns" in c.value]
    assert [h.value for h in at.main.subheader] == ["Both models, same prompt", "What you can look at"]


def test_pressing_load_with_an_unknown_source_keeps_the_session(tiny_dirs):
    at = _app(PairRequest(None, base=tiny_dirs[0], post=tiny_dirs[1]))
    at.sidebar.selectbox[0].select(at.sidebar.selectbox[0].options[-1]).run()  # custom sources
    at.sidebar.text_input[0].input("/no/such/model.gguf")
    at.sidebar.text_input[1].input("/no/such/model.gguf")
    next(b for b in at.sidebar.button if b.label == "Load pair").click().run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.sidebar.error)
    assert at.sidebar.text_input[0].value == "/no/such/model.gguf"  # what the user typed is kept


def test_a_pair_that_fails_to_load_keeps_the_loaded_one(tiny_dirs):
    at = _app(PairRequest(None, base=tiny_dirs[0], post=tiny_dirs[1]))
    loaded = at.session_state["pair"]
    at.sidebar.selectbox[0].select(at.sidebar.selectbox[0].options[-1]).run()  # custom sources
    at.sidebar.text_input[0].input("nobody/not-a-model")
    at.sidebar.text_input[1].input("nobody/not-a-model-it")
    next(b for b in at.sidebar.button if b.label == "Load pair").click().run()
    assert not at.exception
    [error] = [e.value for e in at.sidebar.error]
    assert "hf download nobody/not-a-model" in error and "stays in use" in error
    assert at.session_state["pair"] is loaded
    assert not any("No model pair is loaded" in i.value for i in at.info)
    assert any("layers" in m.value for m in at.sidebar.markdown)  # the loaded pair is still described
    at.run()  # another page or rerun: still the loaded pair, still the note
    assert at.session_state["pair"] is loaded and len(at.sidebar.error) == 1


@pytest.mark.demo
def test_the_app_starts_on_the_demo_pair():
    at = _app(timeout=COLD_DEMO_TIMEOUT)
    assert not at.exception
    assert any("**demo**" in m.value for m in at.sidebar.markdown)


def test_the_landing_page_icons_are_material_icons_not_emoji(tiny_dirs):
    at = _app(PairRequest(None, base=tiny_dirs[0], post=tiny_dirs[1]))
    from analyses import STUDIES
    from analyses.lab import LAB
    from app_pages.ui.icons import study_icon

    icons = [link.proto.icon for link in at.get("page_link")]  # the playground, every study, the lab
    assert len(icons) == 1 + len(STUDIES) + 1 and all(icon.startswith(":material/") for icon in icons), icons

    assert all(study_icon(study).startswith(":material/") for study in [*STUDIES, LAB])  # the navigation's too


def test_make_app_runs_without_the_file_watcher_and_make_dev_with_it():
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    root = Path(__file__).resolve().parent.parent

    def planned(target: str) -> str:  # -n: print the commands, run nothing; -o: the venv counts as installed
        return subprocess.run(["make", "-n", "-o", ".venv/.installed", target], cwd=root, capture_output=True,
                              text=True, check=True).stdout

    assert "streamlit run app.py --server.fileWatcherType none" in planned("app")
    assert "--server.fileWatcherType auto" in planned("dev")
