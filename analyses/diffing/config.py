"""Settings of the model-diffing study: the page's widgets and the CLI's options (help texts from here)."""
from __future__ import annotations

from dataclasses import dataclass

from analyses.study import setting
from steering.errors import InvalidInputError

READINGS = ("logit_lens", "patchscope")


@dataclass(frozen=True)
class Config:
    """Settings of the diffing study (the page's controls and the CLI's options)."""

    text: str = setting("", "your text for the per-token view; empty = the built-in examples (one harmless and one "
                            "harmful chat turn)", label="Your text (empty = built-in examples)")
    chat: bool = setting(False, "send your text as one user turn through the chat template (the built-in examples "
                                "always are)", label="Send it as a chat turn")
    position: int = setting(-1, "token position of the logit lens, counted from the text's first token (0 = BOS); "
                                "-1 = where KL(post || base) peaks", label="Lens position (-1 = peak KL)", at_least=-1,
                          special="-1 = where KL peaks")
    k: int = setting(5, "the activation difference is the mean over the first k tokens (after BOS) of each plain "
                        "text", label="First k tokens of plain text", at_least=1)
    reading: str = setting("logit_lens", "how the activation difference is read: the final norm and unembedding "
                                         "of the difference (logit_lens), or added to an identity prompt in the "
                                         "post-trained model, reading what its next token gains (patchscope)",
                           choices=READINGS, label="Reading of the difference")
    top_n: int = setting(10, "tokens per list (lens layers, promoted and demoted, rose and fell)",
                         label="Tokens per list", at_least=1)
    batch_size: int = setting(64, "plain texts per forward pass for the activation difference", at_least=1)


def check(config: Config, pair=None, data=None) -> None:
    """The study's own check (the record's, so the page's and the CLI's, before any work): the settings that are
    wrong whatever the pair; once a pair is loaded, both models, their vocabulary, the texts' token ids, the lens
    position and k against the texts (data None: the built-in texts)."""
    if config.k < 1:
        raise InvalidInputError(f"k must be at least 1 token; got {config.k}.")
    if config.top_n < 1 or config.batch_size < 1:
        raise InvalidInputError("Tokens per list and the batch size must be at least 1.")
    if config.reading not in READINGS:
        raise InvalidInputError(f"Unknown reading '{config.reading}': use {' or '.join(READINGS)}.")
    if config.position < -1:
        raise InvalidInputError(f"Lens position {config.position}: give a position from 0, or -1 for the peak KL.")
    if pair is not None:
        from .compute import check_inputs  # compute reads this module's settings: imported here, not at the top

        check_inputs(pair, config, data)
