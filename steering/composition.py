"""Several steerings at once, each a direction with its own layers, strength, mode and positions; and the
position rules a steering may write at.

    refusal_off = SteeringSpec(refusal, "ablate", (9,), ablation="affine", positions=PositionRule("prompt").positions())
    truth_on = SteeringSpec(truth, "add", (6, 7), 0.1, positions=PositionRule("from", start=0).positions())
    table = compare(pair.models(), pair.tokenizer, prompts, Composition((refusal_off, truth_on)),
                    references=references).table

A Composition is used wherever one SteeringSpec is (generate, compare): it has the same `validate`, `applied` and
`reference`. compare()'s `references` is either one {role: mean} for every affine ablation, or one per steering
(None where a steering needs none), so two affine ablations can each set their component to their own reference
prompts' mean. Its steerings are applied in list order: where two write the same hook point, the first one's hook
runs first (an ablation listed before an addition removes the component before the vector is added).

Positions are offsets from the end of the prompt, as in interventions.py: -1 is the last prompt token, 0 the first
generated one. Every rule is a function of a token's offset alone, so a token steered in the pass that first sees it
keeps that steering in the KV cache, and generation with and without the cache agree.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from transformers import PreTrainedModel

from .errors import InvalidInputError, SettingError, SteeringError
from .generation import SteeringSpec, check_alpha
from .interventions import Positions, Rows

PositionKind = Literal["all", "prompt", "generated", "from", "tokens"]
POSITION_KINDS: dict[str, str] = {
    "all": "prompt and generated",
    "prompt": "prompt only",
    "generated": "generated only",
    "from": "from a position on",
    "tokens": "chosen positions",
}
FAR = 1 << 30  # the open end of "from a position on": past any context a model has
MAX_OFFSET = 1 << 20  # a typed offset beyond this is a typo, not a position
MAX_STEERINGS = 16  # a card or a page asking for more is refused before any hook is placed


@dataclass(frozen=True)
class PositionRule:
    """Which tokens a steering writes. kind "from": every token at offset `start` or later (start -3: the last
    three prompt tokens and everything generated); kind "tokens": the offsets in `tokens` only."""

    kind: PositionKind = "all"
    start: int = 0
    tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in POSITION_KINDS:
            raise SettingError(f"Unknown position mode {self.kind!r}: use one of {', '.join(POSITION_KINDS)}.")
        if self.kind == "from" and not _is_offset(self.start):
            raise SettingError(f"The first steered position must be a whole number between -{MAX_OFFSET} and "
                               f"{MAX_OFFSET}, not {self.start!r}.")
        if self.kind == "tokens":
            if not self.tokens:
                raise SettingError("Choose at least one token position (-1 = the last prompt token, 0 = the first "
                                   "generated one).")
            bad = [t for t in self.tokens if not _is_offset(t)]
            if bad:
                raise SettingError(f"Token positions must be whole numbers between -{MAX_OFFSET} and {MAX_OFFSET}, "
                                   f"not {bad[0]!r}.")

    def positions(self) -> Positions:
        """The value interventions.py takes: a name, a range (by its bounds) or a tuple of offsets."""
        if self.kind == "from":
            return range(int(self.start), FAR)
        if self.kind == "tokens":
            return tuple(sorted({int(t) for t in self.tokens}))
        return self.kind

    @classmethod
    def of(cls, positions: Positions) -> "PositionRule":
        """The rule a SteeringSpec's positions express (what the page and a card show and store)."""
        if isinstance(positions, str):
            return cls(positions)  # an unknown name is refused by __post_init__
        if isinstance(positions, range) and positions.step == 1 and positions.stop >= FAR:
            return cls("from", start=positions.start)
        return cls("tokens", tokens=tuple(int(p) for p in positions))

    def label(self) -> str:
        if self.kind == "from":
            return f"from position {self.start} on"
        if self.kind == "tokens":
            return f"positions {', '.join(map(str, self.positions()))}"
        return POSITION_KINDS[self.kind]

    def to_json(self) -> dict:
        return {"kind": self.kind, **({"start": self.start} if self.kind == "from" else {}),
                **({"tokens": list(self.positions())} if self.kind == "tokens" else {})}

    @classmethod
    def from_json(cls, data: object) -> "PositionRule":
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            raise SettingError(f"A position rule must be an object with a 'kind', not {data!r}.")
        tokens = data.get("tokens", [])
        if not isinstance(tokens, list):
            raise SettingError(f"A position rule's 'tokens' must be a list of offsets, not {tokens!r}.")
        return cls(data["kind"], data.get("start", 0), tuple(tokens))


def _is_offset(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_OFFSET <= value <= MAX_OFFSET


def parse_offsets(text: str) -> tuple[int, ...]:
    """"-1, 0, 2" as offsets; refused in one sentence when a part is not a whole number."""
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    if not parts:
        raise SettingError("Give at least one token position, e.g. \"-1, 0, 2\" (-1 = the last prompt token, "
                           "0 = the first generated one).")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise SettingError(f"Token positions must be whole numbers separated by commas, not {text!r}.") from None


def parse_alphas(text: str, limit: int = 64) -> list[float]:
    """"0, 0.05, 0.1" as strengths, each finite and within ±MAX_ALPHA (a NaN is named as such)."""
    parts = [p.strip() for p in re.split(r"[,;]", text) if p.strip()]
    if not parts:
        raise SettingError("Give at least one alpha, e.g. \"0, 0.05, 0.1\".")
    if len(parts) > limit:
        raise SettingError(f"Give at most {limit} alphas, not {len(parts)}.")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise SettingError(f"Alphas must be numbers separated by commas, not {text!r}.") from None
        values.append(check_alpha(value, "every alpha"))
    return values


@dataclass(frozen=True)
class Composition:
    """Several steerings applied together, in list order. `reference` [n_layers, d]: the steered model's mean
    residual on reference prompts, handed to every affine ablation that has none of its own (compare() sets it
    per model from its `references`, as for one SteeringSpec)."""

    steerings: tuple[SteeringSpec, ...]
    reference: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        steerings = tuple(self.steerings)
        object.__setattr__(self, "steerings", steerings)
        if not steerings:
            raise InvalidInputError("Add at least one steering.")
        if len(steerings) > MAX_STEERINGS:
            raise InvalidInputError(f"At most {MAX_STEERINGS} steerings at once, not {len(steerings)}.")
        for s in steerings:
            if not isinstance(s, SteeringSpec):
                raise InvalidInputError(f"A composition holds SteeringSpec values, not {type(s).__name__}.")

    def members(self) -> list[SteeringSpec]:
        """The steerings as they run: each affine ablation with its reference."""
        return [s if s.reference is not None or self.reference is None else replace(s, reference=self.reference)
                for s in self.steerings]

    def validate(self, model: PreTrainedModel) -> None:
        for i, s in enumerate(self.members()):
            try:
                s.validate(model)
            except SteeringError as e:  # the same named error, saying which steering it is about
                if len(self.steerings) == 1:
                    raise
                try:
                    named = type(e)(f"Steering {i + 1}: {e}")
                except TypeError:  # an error built from parts (BadFileError)
                    named = InvalidInputError(f"Steering {i + 1}: {e}")
                raise named from None

    @contextmanager
    def applied(self, model: PreTrainedModel, rows: Rows = None) -> Iterator[None]:
        self.validate(model)  # every member before any hook is placed
        with ExitStack() as stack:
            for s in self.members():
                stack.enter_context(s.applied(model, rows))
            yield


def compose(steerings: Sequence[SteeringSpec] | SteeringSpec | Composition) -> Composition:
    """A list of steerings (or one, or a composition) as a Composition."""
    if isinstance(steerings, Composition):
        return steerings
    if isinstance(steerings, SteeringSpec):
        return Composition((steerings,))
    return Composition(tuple(steerings))


References = Mapping[str, torch.Tensor]  # role -> that model's mean residual on reference prompts, [n_layers, d]


def for_model(steering: SteeringSpec | Composition, role: str,
              references: References | Sequence[References | None] | None) -> SteeringSpec | Composition:
    """The steering as it runs on model `role`: with one shared {role: mean}, as the reference of every affine
    ablation that has none of its own; with one entry per steering, each steering's own (None: keep what it has)."""
    if not references:
        return steering
    if isinstance(references, Mapping):
        return replace(steering, reference=references.get(role, steering.reference))
    members = steering.steerings if isinstance(steering, Composition) else (steering,)
    if len(references) != len(members):
        raise InvalidInputError(f"Give one set of reference means per steering ({len(members)}), not "
                                f"{len(references)}.")
    own = tuple(s if r is None or role not in r else replace(s, reference=r[role])
                for s, r in zip(members, references))
    return replace(steering, steerings=own) if isinstance(steering, Composition) else own[0]


def describe(spec: SteeringSpec) -> str:
    """One steering in a few words: what, where, how strong, at which positions."""
    layers = f"layer {spec.layers[0]}" if len(spec.layers) == 1 else f"layers {spec.layers[0]}–{spec.layers[-1]}"
    rule = PositionRule.of(spec.positions).label()
    if spec.mode == "add":
        return f"add · {layers} · alpha {spec.alpha:g} · {rule}"
    if spec.ablation == "affine":
        return f"ablate (affine) · {layers} · {rule}"
    return f"ablate (project) · layer {spec.layers[0]}'s direction at every layer · {rule}"

