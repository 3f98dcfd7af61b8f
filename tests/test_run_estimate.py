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


def test_no_estimate_without_a_work_measure_or_a_measured_run(study, monkeypatch):
    assert study_page.run_estimate(replace(study, work=None), None, study.Config()) is None
    monkeypatch.setattr(study_page, "shipped", lambda study, pair: None)
    assert study_page.run_estimate(study, None, study.Config()) is None
