"""Settings of the confidence study: the page's widgets and the CLI's options (help texts from here)."""
from __future__ import annotations

from dataclasses import dataclass

from analyses.study import setting
from steering.errors import InvalidInputError

NORM_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)  # overlap sweep: top fractions by norm...
CANDIDATE_COUNTS = (5, 10, 20, 50, 100)  # ...times numbers of lowest-variance neurons


@dataclass(frozen=True)
class Config:
    """Settings of the confidence study (the page's controls and the CLI's options)."""

    layer: int = setting(-1, "MLP layer whose neurons are scored and ablated; negative counts from the end "
                             "(-1 = last)", label="MLP layer (-1 = last)")
    null_dims: int = setting(10, "bottom singular vectors of the unembedding that span its effective null space",
                             label="Null-space dimensions", at_least=1)
    top_norm_fraction: float = setting(0.25, "candidates come from this top fraction of neurons by output-weight "
                                             "norm...", label="Top fraction by norm", above=0, at_most=1)
    n_candidates: int = setting(10, "...and are the ones of them with the lowest logit variance",
                                label="Candidates (lowest logit variance)", at_least=1)
    n_random: int = setting(5, "random neurons (same indices in both models, none a candidate) ablated as a "
                               "control", label="Random control neurons", at_least=0)
    max_tokens: int = setting(512, "tokens of held-out text for the ablations (and the neurons' mean activations)",
                              label="Tokens of held-out text", at_least=2)
    n_questions: int = setting(200, "calibration questions, half capitals, half cities",
                               label="Calibration questions", at_least=2)
    n_bins: int = setting(10, "equal-width confidence bins for ECE and the reliability diagram",
                          label="Confidence bins", at_least=2)
    batch_size: int = setting(4, "texts per forward pass in the ablations (4x as many questions per pass)",
                         at_least=1)
    seed: int = setting(0, "seed for the random control neurons and the drawn questions", at_least=0)


def check_layer_setting(config: Config, n_layers: int) -> int:
    """The absolute MLP layer of the setting; a layer out of range is named as the user typed it."""
    layer = config.layer + n_layers if config.layer < 0 else config.layer
    if not 0 <= layer < n_layers:
        raise InvalidInputError(f"MLP layer {config.layer} is out of range: this model has {n_layers} layers, "
                                f"0..{n_layers - 1} (or -1..-{n_layers} from the end).")
    return layer


def check(config: Config, pair=None, data=None) -> None:
    """The study's own check (the record's, so the page's and the CLI's, before any work): the MLP layer, the null
    space and the counts against the pair's model once a pair is loaded."""
    if pair is not None:
        from .compute import check_config  # compute reads this module's settings: imported here, not at the top

        check_config(config, pair)
