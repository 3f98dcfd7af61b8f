"""Settings of the truthfulness study: the page's controls and the CLI's options (help from each field).

The defaults are Du et al.'s method (their code, `Knowledge+Truthfulness/`, after Geometry of Truth); each option
that departs from it says so in its help."""
from __future__ import annotations

from dataclasses import dataclass

from analyses.statements import statement_set_names
from analyses.study import setting

METHODS = ("paper", "single_set")
# The paper pools sp_en_trans, animal_class, inventors, element_symb and facts; the project ships the first, second
# and fourth of them (as translations, animals, elements) and has no inventors or facts set.
PAPER_TRAIN_SETS = ("translations", "animals", "elements")


@dataclass(frozen=True)
class Config:
    """Settings of the truthfulness study."""

    method: str = setting(
        "paper", "where the truth direction comes from. paper (Du et al.): the difference of the true and false means "
        "of the train_sets' statements, each set centred on its own mean before pooling, with `dataset` held out "
        "for evaluation (n_test and n_steer of its statements). single_set (this project's truthfulness@2, departs from the paper): "
        "the difference of means of `dataset`'s own train split, evaluated on its test split",
        choices=METHODS, label="Direction method")
    dataset: str = setting("cities", "a built-in statement set (analyses.statements); a name for an uploaded one. "
                                     "paper: held out and evaluated; single_set: split into train and test",
                           choices=statement_set_names, label="Statements")
    train_sets: tuple[str, ...] = setting(
        PAPER_TRAIN_SETS, "paper method: the statement sets pooled (each centred) to find the direction. The paper "
        "uses sp_en_trans, animal_class, inventors, element_symb and facts; the project ships the first, second and "
        "fourth (translations, animals, elements), not inventors or facts", label="Direction from the sets")
    n_train: int = setting(200, "single_set only: training statements used (balanced sample of the train split; "
                                "0 = all). The paper method uses every statement of the train_sets",
                           label="Train statements (single_set; 0 = all)", at_least=0, special="0 = all")
    n_test: int = setting(200, "statements of `dataset` whose activations test the probes (balanced; 0 = all). "
                               "paper: drawn from all of it (the paper tests on every one; 200 keeps a CPU run "
                               "short); single_set: from its test split (truthfulness@2 used 100)",
                          label="Probe test statements (0 = all)", at_least=0, special="0 = all")
    layer_step: int = setting(1, "probe every k-th layer...", at_least=1)
    max_layer: int = setting(-1, "...from 0 up to this one (-1 = the last)", at_least=-1,
                             special="-1 = the last")
    probe_layer: int = setting(
        -1, "layer (residual stream entering it, resid_pre) whose direction steers. -1 = the paper's: the block "
            "output at probe_fraction of the depth, i.e. resid_pre round(probe_fraction x layers) + 1; -2 = the "
            "best layer by train projection accuracy (truthfulness@2, departs from the paper)",
        label="Probe layer (-1 = paper's depth fraction, -2 = best)", at_least=-2,
        special="-1 = the paper's depth fraction, -2 = the best")
    probe_fraction: float = setting(0.375, "with probe_layer -1: the probe layer as a fraction of the depth in "
                                           "block-output numbering (the paper: 12 of Llama-3.1-8B's 32 layers)",
                                  at_least=0, at_most=1)
    layer_start: int = setting(
        -1, "first layer (resid_pre) the direction is added at. -1 = the paper's: the block output at start_fraction "
            "of the depth, i.e. resid_pre round(start_fraction x layers) + 1; -2 = a third of the depth in resid_pre "
            "numbering (truthfulness@2, departs from the paper)", label="First steered layer (-1 = paper, -2 = a third)",
        at_least=-2, special="-1 = the paper's, -2 = a third of the depth")
    start_fraction: float = setting(0.25, "with layer_start -1: the first steered layer as a fraction of the depth, "
                                          "block-output numbering (the paper: 8 of Llama-3.1-8B's 32 layers)",
                                  at_least=0, at_most=1)
    spread: str = setting("full", "full (the paper): alpha x the direction added at every steered layer; split "
                                  "(truthfulness@2, departs from the paper): alpha x the direction divided over the "
                                  "steered layers, one gap in all", choices=("full", "split"),
                          label="Coefficient per layer")
    shuffle: str = setting("per_statement", "few-shot prompt order. per_statement (the paper): the examples "
                                            "reshuffled for each statement, seeded; fixed (truthfulness@2, departs "
                                            "from the paper): one shuffle for all",
                           choices=("per_statement", "fixed"), label="Few-shot order")
    n_shots: int = setting(4, "labelled statements in the few-shot judging prompt", label="Few-shot examples",
                           at_least=0)
    n_steer: int = setting(200, "statements scored with and without the intervention (balanced; 0 = all). paper: "
                                "drawn from all of `dataset` (the paper scores every one; 200 of the 760 cities "
                                "statements keep a CPU run short: set 0 for all); single_set: from its test split "
                                "(truthfulness@2 used 24)", label="Statements steered (0 = all)",
                           at_least=0, special="0 = all")
    n_calib: int = setting(12, "train statements scored unsteered to set each model's TRUE/FALSE threshold (for "
                               "the flip rate, the project's own measure)", label="Calibration statements",
                           at_least=0, special="0 = all")
    alphas: tuple[float, ...] = setting((1.0,), "intervention strengths (coefficients; the paper uses 1)",
                                        label="Alphas", at_least=-100, at_most=100)  # beyond: noise
    answers: tuple[str, str] = setting(("TRUE", "FALSE"), "the answer words scored as P(first) - P(second)",
                                       label="Answer words, true then false")
    logistic_c: float = setting(1.0, "inverse regularisation of the logistic probe", above=0)
    batch_size: int = setting(16, "statements per forward pass", at_least=1)
    seed: int = setting(0, "seed of the balanced samples, the few-shot examples and their per-statement shuffles",
                        at_least=0)


def single_set(**changes) -> Config:
    """The settings of truthfulness@2 (this project's method before the paper's became the default)."""
    old = dict(method="single_set", probe_layer=-2, layer_start=-2, spread="split", shuffle="fixed", n_test=100,
               n_steer=24,
               alphas=(1.0, 4.0))
    return Config(**{**old, **changes})


def check(config: Config, pair=None, data=None) -> None:
    """The study's own check (the record's, so the page's and the CLI's, before any work): the method, its sets and
    the layers against the pair's depth once a pair is loaded; the user's statements' columns when given."""
    from .compute import check_config  # compute reads this module's settings: imported here, not at the top
    from .data import check_frame

    if pair is not None:
        check_config(config, pair.n_layers)
    if data is not None:
        check_frame(data)
