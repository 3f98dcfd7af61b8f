"""The refusal study's settings. Sizes are per side (harmful, harmless); None means the whole split."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analyses.study import setting
from steering.errors import InvalidInputError

ABLATIONS = ("affine", "project")

ABLATION_HELP = (
    "How a direction is ablated (selection and test). affine (default): ACE of Marshall, Scherlis & Belrose "
    "(2024): at the input of every layer the component along the direction is set to the steered model's mean "
    "harmless value (train split), at the post-instruction and generated tokens only (for transfer: the steered "
    "model's own harmless mean projected on the other model's direction). project: Arditi's projection of the "
    "direction out of every layer, attention and MLP output, at every token. On the demo pair projection breaks "
    "the model (harmless KL 10-40 nats for every candidate: the diff-in-means direction is dominated by one large "
    "residual dimension of Gemma), so nothing passes the KL filter; hence affine is the default.")


@dataclass(frozen=True)
class Config:
    """What the refusal study computes."""

    n_train: int | None = setting(None, "train prompts per side for the difference in means",
                                  label="train prompts per side", at_least=1,
                                  special="empty or all = the whole split")
    n_val: int = setting(8, "validation prompts per side for candidate selection (each candidate costs about three "
                            "forward passes of them)", label="validation prompts per side", at_least=1)
    layer_step: int = setting(2, "score every layer_step-th layer (2, the default, halves selection's time: the demo "
                                 "pair's default run stays under 90 s on 2 cores; 1 = Arditi's full grid)",
                              label="score every n-th layer", at_least=1)
    n_test: int | None = setting(24, "held-out prompts per side for the interventions (all: 40 + 38 on the demo, "
                                     "which nearly doubles the test step)", label="test prompts per side", at_least=1,
                                 special="empty or all = the whole split")
    positions: tuple[int, ...] = setting((), "offsets from the prompt's end; empty = the template's "
                                             "post-instruction tokens", label="positions", at_least=-1000, at_most=-1,
                                       special="offsets from the prompt's end, -1 = the last token")
    alpha: float = setting(0.1, "addition strength in units of the typical residual norm at the layer: the vector "
                                "added is alpha x |resid| x unit direction (the demo's residual norm grows from ~26 "
                                "to ~37,640 over depth, so no fixed raw scale fits every layer; 0.1 makes the demo's "
                                "post-trained model refuse most harmless prompts without breaking its text)",
                           label="addition alpha (x residual norm)", at_least=-100, at_most=100)  # as MAX_ALPHA
    prune_layer_fraction: float = setting(0.2, "filter: discard candidates in the last 20% of layers",
                                          label="discard the last fraction of layers", at_least=0, below=1)
    max_kl: float = setting(0.1, "filter: discard candidates whose ablation moves the harmless next-token "
                                 "distribution by a KL above this", label="max KL on harmless", at_least=0)
    min_addition_score: float = setting(0.0, "filter: adding the candidate must lift the harmless refusal log-odds "
                                             "above this", label="min addition score")
    refusal_tokens: tuple[str, ...] = setting((), "tokens whose probability makes up the refusal score; empty = the "
                                                  "first token of each refusal phrase ('I', 'Sorry', 'As', ...)",
                                              label="refusal tokens")
    phrases: tuple[str, ...] = setting((), "refusal phrases (lowercase openers; a reply starting with one counts "
                                           "as a refusal); empty = assets/refusal/refusal_phrases.txt",
                                       label="refusal phrases")
    max_new_tokens: int = setting(8, "greedy tokens per reply; enough to judge a refusal opener",
                                  label="new tokens per reply", at_least=1)
    ablation: str = setting("affine", ABLATION_HELP, choices=ABLATIONS, label="ablation")
    batch_size: int = setting(16, "prompts per forward pass", label="batch size", at_least=1)


def check(config: Config, pair=None, data=None) -> None:
    """The study's own check (the record's, so the page's and the CLI's, before any work): the settings, and the
    pruned layers against the pair's depth once a pair is loaded."""
    check_config(config, None if pair is None else pair.n_layers)


def check_config(config: Config, n_layers: int | None) -> None:
    """Refuse settings the study cannot run with, before any model is run (one sentence each); n_layers None:
    what can be judged without the model."""
    if config.ablation not in ABLATIONS:
        raise InvalidInputError(f"Unknown ablation '{config.ablation}': use one of {', '.join(ABLATIONS)}.")
    for name in ("n_val", "layer_step", "max_new_tokens", "batch_size"):
        if getattr(config, name) < 1:
            raise InvalidInputError(f"{name} must be at least 1, not {getattr(config, name)}.")
    for name in ("n_train", "n_test"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise InvalidInputError(f"{name} must be at least 1 (or all), not {getattr(config, name)}.")
    if not 0.0 <= config.prune_layer_fraction < 1.0:
        raise InvalidInputError(f"prune_layer_fraction must be in [0, 1), not {config.prune_layer_fraction}.")
    bad = [p for p in config.positions if not -1000 <= p <= -1]
    if bad:
        raise InvalidInputError(f"Positions are offsets from the prompt's end (-1 is the last token); {bad[0]} "
                                "is not one.")
    if n_layers is not None and not any(layer < (1.0 - config.prune_layer_fraction) * n_layers
                                        for layer in range(n_layers)):
        raise InvalidInputError(f"prune_layer_fraction {config.prune_layer_fraction} leaves none of the "
                                f"{n_layers} layers to score.")


def phrases_setting(lines: Sequence[str]) -> tuple[str, ...]:
    """The `phrases` value for a list typed in a text box: () when it is the built-in list spelt out, so the page
    and the command line share one stored result for the defaults."""
    from steering.judging import refusal_phrases

    typed = tuple(p.strip().lower() for p in lines if p.strip())
    return () if typed == refusal_phrases() else typed
