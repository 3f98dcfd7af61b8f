"""The demo pair's shipped results (assets/demo/results/<study>/) are honest: each was written by the project's own
command, for the code's study version and the default Config, and on the demo pair it is the current result that
the page shows at once. (Each study's tests/test_<study>_shipped.py recomputes a cheap slice and compares rows.)"""
import math

import pytest

from analyses import STUDIES, STUDY_NAMES
from analyses.store import SHIPPED_ROOT, config_json, read_manifest, read_result


@pytest.mark.parametrize("study", STUDIES, ids=STUDY_NAMES)
def test_each_shipped_result_is_of_this_version_and_the_default_config(study):
    folder = SHIPPED_ROOT / study.name
    manifest = read_manifest(folder)
    assert manifest["study"] == study.name
    assert manifest["version"] == study.version, "stale: rerun " + manifest["command"]
    assert manifest["config"] == config_json(study.Config()), "stale: rerun " + manifest["command"]
    assert manifest["command"].startswith(f"python -m analyses {study.name} --pair demo")
    assert manifest["fingerprints"]["base"].startswith("demo/base@")
    assert manifest["seconds"] > 0 and manifest["created_at"]
    assert isinstance(read_result(folder, study).result, study.Result)


@pytest.mark.demo
@pytest.mark.parametrize("study", STUDIES, ids=STUDY_NAMES)
def test_on_the_demo_pair_each_shipped_result_is_current(study, shipped_result):
    headline = study.headline(shipped_result(study))
    assert headline and all(isinstance(v, (int, float, str, bool)) for v in headline.values())
    numbers = [v for v in headline.values() if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)  # a NaN headline means an empty or broken table
