"""The playground's steps as plain functions: get a direction for both models of a pair, steer, and write the
Python that reproduces it. The page (app_pages/1_Playground.py) only adds widgets and charts."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .direction_cache import DirectionCache, pair_direction
from .directions import Direction
from .errors import InvalidInputError
from .extraction import Progress, collect_residuals
from .generation import DecodingSettings, SteeringSpec, format_prompts
from .pairs import ModelPair
from .refusal_data import refusal_study_split
from .registry import pair_names
from .tokens import encode


@dataclass(frozen=True)
class ContrastPrompts:
    """Two prompt lists and how to read them: through the chat template or raw, at an offset from the end."""

    name: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    chat: bool = False
    position: int = -1

    def validate(self) -> None:
        if not self.positive or not self.negative:
            side = "first" if not self.positive else "second"
            raise InvalidInputError(f"The {side} prompt list is empty: a direction needs prompts on both sides.")
        if self.position >= 0:
            raise InvalidInputError("The token position is an offset from the end of the prompt: -1 is the last token.")


def check_position_fits(tokenizer, texts: Sequence[str], position: int) -> None:
    """Refuse, before any work, a token offset that reaches past the start of the shortest prompt."""
    shortest = int(encode(tokenizer, texts).attention_mask.sum(dim=1).min())
    if -position > shortest:
        raise InvalidInputError(f"Token position {position} is before the start of the shortest prompt "
                                f"({shortest} tokens): choose a position from -1 to -{shortest}.")


def directions_for_pair(pair: ModelPair, prompts: ContrastPrompts, *, cache: DirectionCache | None = None,
                        progress: Progress | None = None) -> dict[str, Direction]:
    """The difference-in-means direction of every model of the pair (from the on-disk cache when computed before)."""
    prompts.validate()
    positive, negative = (format_prompts(pair.tokenizer, side, prompts.chat) if prompts.chat else list(side)
                          for side in (prompts.positive, prompts.negative))
    check_position_fits(pair.tokenizer, positive + negative, prompts.position)
    roles = list(pair.models())
    out = {}
    for i, role in enumerate(roles):
        report = (lambda done, total, i=i: progress(i * total + done, total * len(roles))) if progress else None
        out[role] = pair_direction(pair, role, positive, negative, dataset=prompts.name, position=prompts.position,
                                   cache=cache, progress=report)
    return out


REFERENCE_PROMPTS = 32  # the affine ablation's reference mean: enough prompts for a stable mean, ~1 s a model


def reference_prompts(pair: ModelPair, contrast: ContrastPrompts | None) -> tuple[list[str], int]:
    """(formatted texts, position) whose mean residual the affine ablation sets the direction's component to: the
    contrast's negative side where the direction was computed here, else the refusal study's harmless training
    instructions through the chat template at the last token (a loaded direction brings no negative prompts)."""
    if contrast is not None:
        negative = list(contrast.negative[:REFERENCE_PROMPTS])
        return (format_prompts(pair.tokenizer, negative) if contrast.chat else negative), contrast.position
    return format_prompts(pair.tokenizer, refusal_study_split("harmless.txt", "train")[:REFERENCE_PROMPTS]), -1


def mean_residuals(pair: ModelPair, texts: Sequence[str], position: int = -1,
                   roles: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Each model's mean residual stream entering every layer at one position: {role: [n_layers, d]}; `roles`:
    only those models (None: all)."""
    return {role: collect_residuals(model, pair.tokenizer, list(texts), positions=(position,))[:, :, 0].mean(0)
            for role, model in pair.models().items() if roles is None or role in roles}


def cosine_table(directions: dict[str, Direction]) -> pd.DataFrame:
    """Cosine similarity of the base and post-trained directions per layer."""
    if set(directions) != {"base", "post"}:
        return pd.DataFrame(columns=["layer", "cosine"])
    cos = directions["base"].cosine(directions["post"])
    return pd.DataFrame({"layer": range(len(cos)), "cosine": cos.tolist()})


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def pair_load_settings(pair: ModelPair) -> dict:
    """What loads this pair again, as plain JSON: a registered name, or the two sources; and how it was loaded."""
    s = pair.settings
    registered = pair.spec.name.partition("@")[0] in pair_names()
    return {"name": pair.spec.name if registered else None, "base": None if registered else str(pair.spec.base),
            "post": None if registered else str(pair.spec.post), "dtype": s.dtype, "quantization": s.quantization,
            "device": s.device}


def load_call(settings: dict) -> str:
    """The `load_pair(...)` call of pair_load_settings' record, each value written by repr (valid Python, whatever
    the text)."""
    how = f"dtype={settings['dtype']!r}, quantization={settings['quantization']!r}, device={settings['device']!r}"
    if settings.get("name") is not None:
        return f"load_pair({settings['name']!r}, {how})"
    return f"load_pair(base={settings['base']!r}, post={settings['post']!r}, {how})"


def reproduce_snippet(pair: ModelPair, prompts: Sequence[str], chat: bool, contrast: ContrastPrompts | None,
                      source_role: str, spec: SteeringSpec, decoding: DecodingSettings,
                      direction_file: str | None = None, builtin_set: bool = False) -> str:
    """Python that gives the same four generations from a script, run from any folder (it puts this project on
    the import path). `builtin_set`: the contrast lists are the built-in set named `contrast.name`
    (analyses.contrast_sets), referred to by name rather than spelt out."""
    load = load_call(pair_load_settings(pair))
    lines = [
        "# Runs from any folder: the first lines put this project on the import path.",
        "import sys",
        f"sys.path.insert(0, {str(PROJECT_ROOT)!r})",
        "",
        "from steering import load_pair, diff_in_means, Direction",
        "from steering.generation import SteeringSpec, DecodingSettings, compare, format_prompts",
        "",
        f"pair = {load}",
    ]
    if contrast is not None:
        lines += ([
            "from analyses.contrast_sets import builtin_sets",
            f"chosen = builtin_sets()[{contrast.name!r}]",
            "positive, negative = list(chosen.positive), list(chosen.negative)",
        ] if builtin_set else [
            f"positive = {list(contrast.positive)!r}",  # repr: valid Python for any text (json.dumps writes an
            f"negative = {list(contrast.negative)!r}",  # emoji as two \\u surrogates Python cannot encode)
        ])
        if contrast.chat:
            lines.append("positive, negative = format_prompts(pair.tokenizer, positive), format_prompts(pair.tokenizer, negative)")
        lines.append(f"direction = diff_in_means(pair.{source_role}, pair.tokenizer, positive, negative, "
                     f"position={contrast.position}, dataset={contrast.name!r})")
    else:
        lines.append(f"direction = Direction.load({direction_file or 'direction.safetensors'!r})")
    references = ""
    if spec.mode == "ablate" and spec.ablation == "affine":
        lines += _reference_lines(contrast)
        references = ", references=references"
    lines += [
        f"spec = SteeringSpec(direction, mode={spec.mode!r}, layers={tuple(spec.layers)!r}, alpha={spec.alpha!r}, "
        f"positions={spec.positions!r}, units={spec.units!r}, ablation={spec.ablation!r})",
        f"decoding = DecodingSettings(max_new_tokens={decoding.max_new_tokens}, greedy={decoding.greedy}, "
        f"seed={decoding.seed}, temperature={decoding.temperature}, top_p={decoding.top_p}"
        + (f", unembedding={decoding.unembedding!r})" if decoding.unembedding != "plain" else ")"),
        f"table = compare(pair.models(), pair.tokenizer, {list(prompts)!r}, spec, decoding=decoding, "
        f"chat={chat}{references}).table",
        "print(table.to_string())",
    ]
    return "\n".join(lines) + "\n"



def _reference_lines(contrast: ContrastPrompts | None) -> list[str]:
    """The snippet's lines computing the affine ablation's reference means, as reference_prompts() picks them."""
    lines = ["from steering.playground import mean_residuals"]
    if contrast is not None:  # `negative` is already through the chat template when the contrast reads it so
        return lines + [f"references = mean_residuals(pair, negative[:{REFERENCE_PROMPTS}], {contrast.position})"]
    return lines + [
        "from steering.refusal_data import refusal_study_split",
        f"harmless = format_prompts(pair.tokenizer, refusal_study_split('harmless.txt', 'train')[:{REFERENCE_PROMPTS}])",
        "references = mean_residuals(pair, harmless, -1)",
    ]
