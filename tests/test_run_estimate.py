"""The page's estimate of a run's time: the shipped default run's measured seconds scaled by the study's work."""
from dataclasses import replace

import pytest

from analyses import find_study
from analyses.store import Shipped
from app_pages.ui import study_page


@pytest.fixture
def study(monkeypatch):
    monkeypatch.setattr(study_page, "shipped", lambda study, pair: Shipped(None, {"seconds": 60.0,
                                                                                  "load_average": 0.5}, None))
    return replace(find_study("refusal"), work=lambda pair, config, data: float(config.n_val))


def test_the_estimate_scales_the_measured_default_run_by_the_work(study):
    config = study.Config()
    assert "about 60 s" in study_page.run_estimate(study, None, config)
    assert "about 4 min" in study_page.run_estimate(study, None, replace(config, n_val=4 * config.n_val))
    assert "60 s for the defaults" in study_page.run_estimate(study, None, config)


def test_without_a_work_measure_the_default_run_is_timed_and_other_settings_say_so(study):
    plain = replace(study, work=None)
    assert "A run with the default settings takes about 60 s" in study_page.run_estimate(plain, None, plain.Config())
    other = study_page.run_estimate(plain, None, replace(plain.Config(), n_val=4 * plain.Config().n_val))
    assert "default settings takes about 60 s" in other and "other settings take more or less" in other


def test_no_estimate_without_a_measured_run(study, monkeypatch):
    monkeypatch.setattr(study_page, "shipped", lambda study, pair: None)
    assert study_page.run_estimate(study, None, study.Config()) is None


def test_two_stages_of_the_road_are_timed_by_the_registered_pairs_shipped_run(study, monkeypatch):
    """A road pair has no shipped run of its own (other fingerprints), but its models are the demo pair's size."""
    from types import SimpleNamespace

    monkeypatch.setattr(study_page, "shipped", lambda study, pair: None)
    road = SimpleNamespace(name="demo@step108..dpo")
    estimate = study_page.run_estimate(study, road, study.Config())
    assert estimate is not None and "the demo pair's shipped result" in estimate
    seconds = study_page.read_manifest(study_page.SHIPPED_ROOT / study.name)["seconds"]
    assert f"{seconds:.0f} s for the defaults" in estimate
    assert study_page.run_estimate(study, SimpleNamespace(name="/some/folder@x"), study.Config()) is None


def test_the_lab_is_not_timed_by_its_shipped_manifest(monkeypatch):
    """The lab's shipped seconds are its last step's (its study runs were cached): no estimate from them."""
    from analyses.lab import LAB

    monkeypatch.setattr(study_page, "shipped", lambda study, pair: Shipped(None, {"seconds": 167.2}, None))
    assert study_page.run_estimate(LAB, None, LAB.Config()) is None
