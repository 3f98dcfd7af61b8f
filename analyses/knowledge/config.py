"""Settings of the knowledge study (the page's controls and the CLI's options) and their checks."""
from __future__ import annotations

from dataclasses import dataclass

from analyses.study import setting
from steering.errors import InvalidInputError

from .data import dataset_names

CORRUPTIONS = ("noise", "paired")
COMPONENTS = ("resid", "mlp", "attn")


@dataclass(frozen=True)
class Config:
    """Settings of the knowledge study."""

    corruption: str = setting("noise", "noise: Gaussian noise on the subject's embeddings, scored by P(object) "
                              "(ROME); paired: a false twin statement with another subject, scored by "
                              "P(TRUE) - P(FALSE) after a few-shot prompt (the paper)", choices=CORRUPTIONS)
    dataset: str = setting("cities", "fact table", choices=dataset_names, label="Fact table")
    n_items: int = setting(4, "items traced and averaged: the first ones (seeded order) that both models get right",
                           label="Items to average", at_least=1)
    n_screen: int = setting(200, "at most this many candidates are screened, 40 at a time until n_items are found",
                            label="Items to screen (at most)", at_least=1)
    components: str = setting("resid,mlp,attn", "comma-separated: resid (residual stream), mlp, attn")
    window: int = setting(10, "mlp/attn: a cell restores layers l - window//2 .. l + window//2 - 1, clipped",
                          label="MLP/attention window (layers)", at_least=1)
    noise_scale: float = setting(3.0, "noise std in units of the std of the subjects' token embeddings (base model)",
                                 label="Noise (× std of subject embeddings)", above=0)
    n_samples: int = setting(2, "noise samples per item (each a group of batch rows with the same noise)",
                             label="Noise samples", at_least=1)
    top_k: int = setting(10, "noise: the object's first token must be among the clean run's top k",
                         label="Object among top k", at_least=1)
    min_gap: float = setting(0.05, "keep items whose clean readout exceeds the corrupted one by at least this",
                             label="Min clean - corrupted", above=0)
    n_shots: int = setting(4, "paired: few-shot examples in the prompt (with 2 the demo base ranks no pair right)",
                           label="Few-shot examples (paired)", at_least=0)
    answers: str = setting("TRUE,FALSE", "paired: the two answer words (first token of each)",
                           label="Answer words (paired)")
    cross_model: bool = setting(True, "also patch base -> post and post -> base (residual stream)",
                                label="Cross-model patching (residual stream)")
    batch_size: int = setting(64, "restorations per forward pass", at_least=1)
    seed: int = setting(0, "seed of the item order, the noise and the few-shot examples", at_least=0)


def components(config: Config) -> list[str]:
    chosen = [c.strip() for c in config.components.split(",") if c.strip()]
    bad = [c for c in chosen if c not in COMPONENTS]
    if not chosen or bad:
        raise InvalidInputError(f"Components must be among resid, mlp, attn (got '{config.components}').")
    return chosen


def answers(config: Config) -> tuple[str, str]:
    words = [w.strip() for w in config.answers.split(",")]
    if len(words) != 2 or not all(words):
        raise InvalidInputError(f"Answers must be two comma-separated words, e.g. TRUE,FALSE (got '{config.answers}').")
    return words[0], words[1]


def check(config: Config, pair=None, data=None) -> None:
    """Every setting in range, before any model runs (the record's check: the page's and the CLI's)."""
    if config.corruption not in CORRUPTIONS:
        raise InvalidInputError(f"Unknown corruption '{config.corruption}': use noise or paired.")
    if config.dataset not in dataset_names():
        raise InvalidInputError(f"Unknown knowledge dataset '{config.dataset}': choose one of "
                                f"{', '.join(dataset_names())}.")
    if config.n_items < 1 or config.n_screen < 1 or config.n_samples < 1 or config.batch_size < 1:
        raise InvalidInputError("n_items, n_screen, n_samples and batch_size must be at least 1.")
    if config.min_gap <= 0 or config.noise_scale <= 0 or config.window < 1 or config.top_k < 1:
        raise InvalidInputError("min_gap and noise_scale must be positive, window and top_k at least 1.")
    if config.n_shots < 0:
        raise InvalidInputError(f"n_shots must be 0 or more (got {config.n_shots}).")
    components(config)
    if config.corruption == "paired":
        answers(config)
