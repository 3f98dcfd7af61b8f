"""Settings of the truthfulness study: the page's controls and the CLI's options (help from each field)."""
from __future__ import annotations

from dataclasses import dataclass

from analyses.statements import statement_set_names
from analyses.study import setting


@dataclass(frozen=True)
class Config:
    """Settings of the truthfulness study."""

    dataset: str = setting("cities", "a built-in statement set (analyses.statements); a name for an uploaded one",
                           choices=statement_set_names, label="Statements")
    n_train: int = setting(200, "training statements used (balanced sample of the train split; 0 = all)",
                           label="Train statements (0 = all)", at_least=0, special="0 = all")
    n_test: int = setting(100, "test statements for probe accuracy (balanced sample of the test split; 0 = all)",
                          label="Test statements (0 = all)", at_least=0, special="0 = all")
    layer_step: int = setting(1, "probe every k-th layer...", at_least=1)
    max_layer: int = setting(-1, "...from 0 up to this one (-1 = the last)", at_least=-1,
                           special="-1 = the last")
    probe_layer: int = setting(-1, "layer whose direction steers (-1 = the best by train projection accuracy)",
                               label="Probe layer (-1 = best)", at_least=-1, special="-1 = the best")
    layer_start: int = setting(-1, "first layer the direction is added at (-1 = a third of the depth)",
                               label="First steered layer (-1 = a third of the depth)", at_least=-1,
                               special="-1 = a third of the depth")
    n_shots: int = setting(4, "labelled statements in the few-shot judging prompt", label="Few-shot examples",
                           at_least=0)
    n_steer: int = setting(24, "test statements scored with and without the intervention (balanced)",
                           label="Statements steered", at_least=0, special="0 = all")
    n_calib: int = setting(12, "train statements scored unsteered to set each model's TRUE/FALSE threshold",
                           label="Calibration statements", at_least=0, special="0 = all")
    alphas: tuple[float, ...] = setting((1.0, 4.0), "intervention strengths (1 = one true/false gap in all)",
                                        label="Alphas", at_least=-100, at_most=100)  # beyond: noise
    answers: tuple[str, str] = setting(("TRUE", "FALSE"), "the answer words scored as P(first) - P(second)",
                                       label="Answer words, true then false")
    logistic_c: float = setting(1.0, "inverse regularisation of the logistic probe", above=0)
    batch_size: int = setting(16, "statements per forward pass", at_least=1)
    seed: int = setting(0, "seed of the balanced samples and the few-shot examples", at_least=0)
