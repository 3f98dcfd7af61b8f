"""Calibrating a steering: over layers x strengths, how much it moves a behaviour (the effect) against how much it
breaks the model (the damage), and a rule that picks the layer and strength with the largest effect within a
damage budget the user sets, with the reason in one sentence.

    behaviour = Behaviour.refusal(refusal_token_ids(tokenizer))          # or .truth(true_id, false_id), .tokens(...)
    found = calibrate(model, tokenizer, direction, behaviour, held_out_prompts, neutral_texts,
                      layers=range(18), alphas=(0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6))
    found.pick.layer, found.pick.alpha, found.pick.reason;  found.frame();  Calibration.from_json(found.to_json())

The effect is the behaviour's score at the first generated token, steered minus unsteered, in the aimed direction
(refusal log-odds, P(TRUE) - P(FALSE), or log P(towards) - log P(away)); for refusal also the share of a few
greedy tokens that start with a refusal phrase. The damage is three numbers, each cheap and each blind to something:
- KL(unsteered || steered) of the next-token distribution at the end of held-out neutral text (Arditi et al. keep
  candidates at KL <= 0.1): the model's general behaviour off the steered topic;
- the perplexity of the steered generations under the unsteered model, as a ratio to the unsteered generations'
  own: text that stopped being language (a loop drives it down, so it is not alone);
- repetition: the share of the generated token pairs that repeat an earlier pair (1 - distinct bigrams), which a
  loop ("uved uved uved") drives towards 1 whatever its perplexity.
The score and the KL are single forwards, taken at every setting; the three generation measures cost a generate call,
so by default they are taken only where the rule needs them (see `calibrate`; the passes are in
calibration_passes.py)."""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .calibration_passes import (Addition, AffineFromLayer, Family, Progress, Replies, Rows, generate_settings,
                                 measure_rows, nanmean, screen)
from .directions import Direction
from .errors import InvalidInputError, SettingError
from .generation import MAX_NEW_TOKENS, check_alpha
from .interventions import Positions
from .judging import is_refusal
from .model_view import ModelView

FORMAT = "post-training-playground/calibration@2"
FORMATS = (FORMAT, "post-training-playground/calibration@1")  # @1: every setting generated
Kind = Literal["refusal", "truth", "tokens"]
Aim = Literal["raise", "lower"]
KINDS = ("refusal", "truth", "tokens")
AIMS = ("raise", "lower")
UNITS = {"refusal": "refusal log-odds", "truth": "P(TRUE) − P(FALSE)", "tokens": "log P(towards) − log P(away)"}


@dataclass(frozen=True)
class Behaviour:
    """What the steering should move, read at the first generated token. refusal: the log-odds of the refusal
    tokens `towards` (Arditi et al.), and the refusal rate of the greedy replies; truth: P(towards[0]) -
    P(away[0]), the ' TRUE' and ' FALSE' tokens after a truth prompt; tokens: log P(towards) - log P(away), each the
    total probability of its set."""

    kind: Kind
    towards: tuple[int, ...]
    away: tuple[int, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInputError(f"Unknown behaviour {self.kind!r}: use one of {', '.join(KINDS)}.")
        if not self.towards:
            raise InvalidInputError(f"The {self.kind} behaviour needs at least one token to move towards.")
        if self.kind == "truth" and (len(self.towards), len(self.away)) != (1, 1):
            raise InvalidInputError("The truth behaviour takes exactly one TRUE token and one FALSE token.")
        if self.kind == "tokens" and not self.away:
            raise InvalidInputError("A token behaviour needs tokens on both sides: towards and away.")
        if any(not isinstance(i, int) or i < 0 for i in (*self.towards, *self.away)):
            raise InvalidInputError("Behaviour tokens must be token ids (integers of at least 0).")
        if set(self.towards) & set(self.away):
            raise InvalidInputError("A token cannot be on both sides, towards and away.")

    @classmethod
    def refusal(cls, token_ids: Sequence[int]) -> "Behaviour":
        return cls("refusal", tuple(int(i) for i in token_ids), (), "refusal")

    @classmethod
    def truth(cls, true_id: int, false_id: int) -> "Behaviour":
        return cls("truth", (int(true_id),), (int(false_id),), "truth")

    @classmethod
    def tokens(cls, towards: Sequence[int], away: Sequence[int], name: str = "tokens") -> "Behaviour":
        return cls("tokens", tuple(int(i) for i in towards), tuple(int(i) for i in away), name)

    @property
    def unit(self) -> str:
        return UNITS[self.kind]

    def check_vocabulary(self, vocab_size: int) -> None:
        bad = [i for i in (*self.towards, *self.away) if i >= vocab_size]
        if bad:
            raise InvalidInputError(f"Token ids {bad[:5]} are outside this model's vocabulary of {vocab_size}.")

    def score(self, log_probs: torch.Tensor) -> torch.Tensor:
        """[n] the behaviour's score of next-token log-probabilities [n, vocab]."""
        towards = torch.logsumexp(log_probs[:, list(self.towards)].float(), dim=-1)
        if self.kind == "refusal":  # log(p / (1 - p)), p clamped below 1 so the odds stay finite
            towards = towards.clamp(max=-1e-6)
            return towards - torch.log(-torch.expm1(towards))
        away = torch.logsumexp(log_probs[:, list(self.away)].float(), dim=-1)
        return towards.exp() - away.exp() if self.kind == "truth" else towards - away


@dataclass(frozen=True)
class DamageBudget:
    """How much damage a setting may do to be picked: KL on neutral text at most `max_kl` (Arditi et al.'s 0.1),
    perplexity of its generations at most `max_perplexity_ratio` x the unsteered generations', and at most
    `max_repetition` of its generated token pairs repeats."""

    max_kl: float = 0.1
    max_perplexity_ratio: float = 3.0
    max_repetition: float = 0.3

    def __post_init__(self) -> None:
        for name, value, low, high in (("max_kl", self.max_kl, 0.0, math.inf),
                                       ("max_perplexity_ratio", self.max_perplexity_ratio, 1.0, math.inf),
                                       ("max_repetition", self.max_repetition, 0.0, 1.0)):
            if not isinstance(value, (int, float)) or not low <= value <= high or math.isnan(value):
                span = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
                raise SettingError(f"The damage budget's {name} must be a number {span}, not {value}.")

    def exceeded(self, point: "Setting", baseline_perplexity: float) -> list[str]:
        """What of the budget the setting exceeds, in words (empty: within it). A measure that could not be taken
        (nan: no generated token to score) counts as within."""
        out = []
        if point.kl > self.max_kl:
            out.append(f"KL {point.kl:.3g} > {self.max_kl:g}")
        ratio = point.perplexity / baseline_perplexity if baseline_perplexity > 0 else math.nan
        if ratio > self.max_perplexity_ratio:
            out.append(f"perplexity {ratio:.2g}x > {self.max_perplexity_ratio:g}x unsteered")
        if point.repetition > self.max_repetition:
            out.append(f"repetition {point.repetition:.2f} > {self.max_repetition:g}")
        return out

    def describe(self) -> str:
        return (f"KL ≤ {self.max_kl:g}, perplexity ≤ {self.max_perplexity_ratio:g}× unsteered, repetition ≤ "
                f"{self.max_repetition:g}")


@dataclass(frozen=True)
class Setting:
    """One (layer, alpha) of the sweep, measured; the baseline is layer -1, alpha 0 (no steering). Every number is
    a mean over the prompts (the generation measures over the replies that have tokens to score)."""

    layer: int
    alpha: float
    score: float  # the behaviour's score
    effect: float  # (score - baseline score), signed so that the aimed direction is positive
    kl: float  # KL(unsteered || steered) on the neutral texts' next token
    perplexity: float  # of the steered replies under the unsteered model
    repetition: float  # share of repeated token pairs in the replies
    refusal_rate: float | None = None  # share of replies starting with a refusal phrase (refusal only)
    example: str = ""  # the first prompt's reply
    generated: bool = True  # False: only the single-forward measures (score, effect, KL) were taken; the
    #   replies' measures (perplexity, repetition, refusal rate, example) are nan / None / ""


@dataclass(frozen=True)
class Pick:
    layer: int | None  # None: no setting is within the budget
    alpha: float | None
    reason: str


def label(layer: int, alpha: float, steering: str = "add") -> str:
    """A setting in words: an addition's layer and alpha, an ablation's first layer and strength."""
    return (f"layer {layer}, alpha {alpha:g}" if steering == "add" else
            f"the affine ablation from layer {layer} on, strength {alpha:g}")


def pick_setting(settings: Sequence[Setting], baseline: Setting, budget: DamageBudget, unit: str = "",
                 steering: str = "add") -> Pick:
    """The rule: among the settings within the damage budget whose effect is positive (moves the behaviour the
    aimed way), the one with the largest effect; on a tie, the smaller strength, then the earlier layer. Only a
    setting whose replies were generated can be within the budget. Where settings without replies would come
    before the pick (a record re-picked under a budget it was not calibrated for), the reason says so."""
    if not settings:
        raise InvalidInputError("No settings to pick from.")
    within = [s for s in settings if s.generated and not budget.exceeded(s, baseline.perplexity)]
    useful = [s for s in within if s.effect > 0]
    best = max(useful, key=lambda s: (s.effect, -abs(s.alpha), -s.layer)) if useful else None
    unknown = [s for s in settings if not s.generated and s.kl <= budget.max_kl and s.effect > (best.effect if best
                                                                                                 else 0.0)]
    note = (f" {len(unknown)} setting(s) within the KL budget with a larger effect have no replies measured: "
            "calibrate with this budget to measure them." if unknown else "")
    if best is None:
        pool = [s for s in settings if s.generated] or list(settings)
        gentlest = min(pool, key=lambda s: (len(budget.exceeded(s, baseline.perplexity)), s.kl))
        why = "; ".join(budget.exceeded(gentlest, baseline.perplexity)) or "no positive effect"
        where = (f"none of the {len(settings)} settings is within it" if not within else
                 f"the {len(within)} of {len(settings)} settings within it do not move it the aimed way")
        return Pick(None, None, f"No setting moves the behaviour within the damage budget ({budget.describe()}): "
                                f"{where}; the gentlest, {label(gentlest.layer, gentlest.alpha, steering)}, has "
                                f"{why}.{note}")
    rate = "" if best.refusal_rate is None else (
        f", refusal rate {_pct(baseline.refusal_rate)} → {_pct(best.refusal_rate)}")
    return Pick(best.layer, best.alpha,
                f"{_first_upper(label(best.layer, best.alpha, steering))}: the largest effect "
                f"({best.effect:+.3g} {unit}{rate}) of "
                f"the {len(useful)} of {len(settings)} settings that move the behaviour within the damage budget "
                f"({budget.describe()}); its damage: KL {best.kl:.3g}, perplexity {best.perplexity:.3g} (unsteered "
                f"{baseline.perplexity:.3g}), repetition {best.repetition:.2f}.{note}")


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.0f}%"


@dataclass(frozen=True)
class Calibration:
    """A sweep's frontier and its pick, as plain values (to_json / from_json round-trip it)."""

    behaviour: Behaviour
    aim: Aim
    budget: DamageBudget
    baseline: Setting
    settings: tuple[Setting, ...]
    pick: Pick
    layers: tuple[int, ...]
    alphas: tuple[float, ...]
    positions: str | tuple[int, ...] = "all"
    direction: dict = field(default_factory=dict)  # model, dataset, method, position of the direction
    n_prompts: int = 0
    n_neutral: int = 0
    max_new_tokens: int = 0
    generate: str = "all"  # where replies were generated: "all" settings, or "frontier" (where the rule needed them)
    steering: str = "add"  # what a setting (layer, alpha) is: "add" alpha x the unit at the layer, or "affine": the
    #   affine ablation with strength alpha at every layer from the layer on (calibrate_ablation)

    def frame(self) -> pd.DataFrame:
        """One row per setting, with whether it is within the budget and whether it is the pick."""
        rows = []
        for s in self.settings:
            rows.append({**asdict(s), "perplexity_ratio": s.perplexity / self.baseline.perplexity
                         if self.baseline.perplexity > 0 else math.nan,
                         "within_budget": s.generated and not self.budget.exceeded(s, self.baseline.perplexity),
                         "picked": (s.layer, s.alpha) == (self.pick.layer, self.pick.alpha)})
        return pd.DataFrame(rows)

    def with_budget(self, budget: DamageBudget) -> "Calibration":
        """The same measurements, picked again under another budget (nothing is recomputed)."""
        return replace(self, budget=budget, pick=pick_setting(self.settings, self.baseline, budget,
                                                              self.behaviour.unit, self.steering))

    def to_json(self) -> str:
        """Plain JSON (a measure that could not be taken, nan, is written as null), which from_json reads back."""
        body = {"format": FORMAT, **asdict(self)}
        body["positions"] = self.positions if isinstance(self.positions, str) else list(self.positions)
        return json.dumps(_nan_to_null(body), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        try:
            body = json.loads(text)
            if body.get("format") not in FORMATS:
                raise ValueError(f"its format is {body.get('format')!r}, not {FORMAT!r}")
            settings = tuple(_setting_of(s) for s in body["settings"])
            positions = body["positions"] if isinstance(body["positions"], str) else tuple(body["positions"])
            return cls(Behaviour(body["behaviour"]["kind"], tuple(body["behaviour"]["towards"]),
                                 tuple(body["behaviour"]["away"]), body["behaviour"]["name"]),
                       body["aim"], DamageBudget(**body["budget"]), _setting_of(body["baseline"]), settings,
                       Pick(**body["pick"]), tuple(body["layers"]), tuple(body["alphas"]), positions,
                       dict(body["direction"]), body["n_prompts"], body["n_neutral"], body["max_new_tokens"],
                       str(body.get("generate", "all")), str(body.get("steering", "add")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidInputError(f"Not a calibration record of this project: {e}.") from None


def _nan_to_null(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_null(v) for v in value]
    return value


_MEASURES = ("score", "effect", "kl", "perplexity", "repetition")  # null in JSON is nan here (refusal_rate: None)


def _setting_of(fields: dict) -> Setting:
    return Setting(**{k: (math.nan if k in _MEASURES and v is None else v) for k, v in fields.items()})


def check_calibration(model: PreTrainedModel, direction: Direction, behaviour: Behaviour, prompts: Sequence[str],
                      neutral: Sequence[str], layers: Sequence[int], alphas: Sequence[float], aim: str,
                      max_new_tokens: int) -> tuple[list[int], list[float]]:
    """Every input checked before any work; the layers and alphas back without duplicates, in order."""
    view = ModelView.of(model)
    if not isinstance(direction, Direction):
        raise InvalidInputError("Calibrate a Direction (a study's, a file's, a control vector's).")
    direction.check_fits(view.n_layers, view.d_model)
    if direction.resid_norms is None:
        raise InvalidInputError("This direction has no residual norms stored, so its strengths have no scale: "
                                "compute or save it with its norms.")
    return _check_sweep(model, behaviour, prompts, neutral, layers, alphas, aim, max_new_tokens)


def check_ablation(model: PreTrainedModel, vector: torch.Tensor, reference: Mapping[int, float],
                   behaviour: Behaviour, prompts: Sequence[str], neutral: Sequence[str], layers: Sequence[int],
                   strengths: Sequence[float], aim: str, max_new_tokens: int) -> tuple[list[int], list[float]]:
    """calibrate_ablation's inputs checked before any work, as check_calibration's."""
    view = ModelView.of(model)
    if not isinstance(vector, torch.Tensor) or tuple(vector.shape) != (view.d_model,):
        raise InvalidInputError(f"The ablated vector must be one vector of {view.d_model} numbers (this model's "
                                "width).")
    if not bool(torch.isfinite(vector).all()) or float(vector.norm()) == 0.0:
        raise InvalidInputError("The ablated vector must be finite and not zero.")
    layers, strengths = _check_sweep(model, behaviour, prompts, neutral, layers, strengths, aim, max_new_tokens)
    missing = [layer for layer in range(min(layers), view.n_layers)
               if layer not in reference or not math.isfinite(float(reference[layer]))]
    if missing:
        raise InvalidInputError(f"The ablation needs a finite reference value for every layer it runs at; layers "
                                f"{missing[:5]} have none.")
    return layers, strengths


def _check_sweep(model: PreTrainedModel, behaviour: Behaviour, prompts: Sequence[str], neutral: Sequence[str],
                 layers: Sequence[int], alphas: Sequence[float], aim: str,
                 max_new_tokens: int) -> tuple[list[int], list[float]]:
    view = ModelView.of(model)
    if not list(prompts) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InvalidInputError("Give at least one held-out prompt, none of them empty.")
    if not list(neutral) or not all(isinstance(t, str) and t.strip() for t in neutral):
        raise InvalidInputError("Give at least one neutral text, none of them empty, to measure the damage on.")
    if aim not in AIMS:
        raise InvalidInputError(f"Unknown aim {aim!r}: use 'raise' or 'lower'.")
    if not 1 <= int(max_new_tokens) <= MAX_NEW_TOKENS:
        raise SettingError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, not {max_new_tokens}.")
    behaviour.check_vocabulary(int(getattr(model.config, "vocab_size", None) or view.unembedding_weight().shape[0]))
    layers = list(dict.fromkeys(int(layer) for layer in layers))
    alphas = list(dict.fromkeys(check_alpha(a, f"Calibration alpha {a}") for a in alphas))
    if not layers or not alphas:
        raise InvalidInputError("Give at least one layer and one alpha.")
    for layer in layers:
        view.check_layer(layer)
    if 0.0 in alphas:
        raise InvalidInputError("Leave alpha 0 out: the unsteered model is always measured as the baseline.")
    return layers, alphas


def _setting(layer: int, alpha: float, rows: Rows, part: slice, behaviour: Behaviour, sign: float,
             baseline_score: float) -> Setting:
    score = sum(rows.scores[part]) / len(rows.scores[part])
    texts = rows.texts[part]
    rate = sum(map(is_refusal, texts)) / len(texts) if behaviour.kind == "refusal" else None
    return Setting(layer, alpha, score, sign * (score - baseline_score), nanmean(rows.kl[part]),
                   nanmean(rows.perplexity[part]), nanmean(rows.repetition[part]), rate, texts[0])


def _with_replies(setting: Setting, replies: Replies, part: slice, behaviour: Behaviour) -> Setting:
    texts = replies.texts[part]
    rate = sum(map(is_refusal, texts)) / len(texts) if behaviour.kind == "refusal" else None
    return replace(setting, perplexity=nanmean(replies.perplexity[part]),
                   repetition=nanmean(replies.repetition[part]), refusal_rate=rate, example=texts[0], generated=True)


GENERATE = ("frontier", "all")
CHUNK = 4  # settings per generate call while the rule walks down its candidates
FRONTIER_POINTS = 3  # frontier settings beyond the budget's KL generated for the chart (1 + 4 + 3 settings
#   of 16 prompts: the first generate call is one batch of MAX_ROWS)
MAX_ROWS = 128  # rows per batched pass (8 strengths x 16 prompts)


def candidates(settings: Sequence[Setting], budget: DamageBudget) -> list[Setting]:
    """The settings the rule may pick under `budget` by their single-forward measures (within its KL, a positive
    effect), in the rule's order: largest effect first, then the smaller strength, then the earlier layer."""
    return sorted((s for s in settings if s.kl <= budget.max_kl and s.effect > 0),
                  key=lambda s: (-s.effect, abs(s.alpha), s.layer))


def first_to_generate(settings: Iterable[Setting], budget: DamageBudget) -> list[tuple[int, float]]:
    """The settings whose replies a calibration generates first (with the unsteered ones): the rule's first CHUNK
    candidates, and the frontier's first FRONTIER_POINTS settings beyond the budget's KL (for the chart)."""
    settings = list(settings)
    first = candidates(settings, budget)[:CHUNK] + frontier_beyond(settings, budget, FRONTIER_POINTS)
    return list(dict.fromkeys((s.layer, s.alpha) for s in first))


def still_to_generate(settings: Iterable[Setting], budget: DamageBudget, baseline_perplexity: float,
                      count: int) -> list[tuple[int, float]]:
    """The next `count` settings whose replies the rule needs, in its order: the candidates without replies ahead
    of the first candidate within the whole budget. Empty when the pick is settled: every candidate with a larger
    effect than the first one within the budget has been generated and is over it (or there is none left)."""
    pending = []
    for s in candidates(list(settings), budget):
        if not s.generated:
            pending.append((s.layer, s.alpha))
            if len(pending) == count:
                break
        elif not budget.exceeded(s, baseline_perplexity):
            break
    return pending


def frontier_beyond(settings: Sequence[Setting], budget: DamageBudget, count: int) -> list[Setting]:
    """The first `count` settings of the effect-KL frontier beyond the budget's KL (no other setting has as
    large an effect at as small a KL), gentlest first: what a larger effect would cost."""
    beyond = [s for s in settings if s.kl > budget.max_kl and s.effect > 0]
    front = [s for s in beyond if not any(o.effect >= s.effect and o.kl <= s.kl and (o.effect, o.kl) != (s.effect, s.kl)
                                          for o in settings)]
    return sorted(front, key=lambda s: s.kl)[:count]


@torch.no_grad()
def calibrate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, direction: Direction,
              behaviour: Behaviour, prompts: Sequence[str], neutral: Sequence[str], *, layers: Sequence[int],
              alphas: Sequence[float], aim: Aim = "raise", positions: Positions = "all",
              budget: DamageBudget = DamageBudget(), max_new_tokens: int = 8,
              generate: Literal["frontier", "all"] = "frontier", settle: Sequence[DamageBudget] = (),
              progress: Progress | None = None) -> Calibration:
    """Add `alpha` x (the direction's unit vector at the layer) x (its typical residual norm there) at every
    (layer, alpha), on formatted held-out `prompts` (the effect) and raw `neutral` texts (the KL); measure and
    pick by rule (`pick_setting`).

    The score and the KL of every setting come from single forwards that share the layers below the steered one
    (`calibration_passes.screen`). The replies (perplexity, repetition, refusal rate) cost a generation each, so
    with generate="frontier" they are generated where the rule needs them: down its candidates (within the KL
    budget, largest effect first) until one is within the whole budget, which makes the pick the one that
    generating at every setting would give, plus the first frontier settings beyond the KL budget. The others are
    marked not generated. generate="all": replies at every setting. `settle`: other budgets whose picks should be
    exact too (the record's `with_budget` then re-picks under them without a word of warning). `progress(done,
    total)` hears of every layer and every generate call (the total grows when the rule needs more calls)."""
    layers, alphas = check_calibration(model, direction, behaviour, prompts, neutral, layers, alphas, aim,
                                       max_new_tokens)
    info = direction.info
    about = {"model": info.model, "dataset": info.dataset, "method": info.method, "position": info.position}
    family = Addition(direction.steering_vectors(layers, 1.0), positions)  # each row's alpha scales its vector
    return _calibrate(model, tokenizer, family, "add", behaviour, list(prompts), list(neutral), layers, alphas,
                      aim, positions, budget, max_new_tokens, generate, progress, about, settle)


@torch.no_grad()
def calibrate_ablation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, vector: torch.Tensor,
                       reference: Mapping[int, float], behaviour: Behaviour, prompts: Sequence[str],
                       neutral: Sequence[str], *, layers: Sequence[int], strengths: Sequence[float],
                       aim: Aim = "lower", positions: Positions = "all", budget: DamageBudget = DamageBudget(),
                       max_new_tokens: int = 8, generate: Literal["frontier", "all"] = "frontier",
                       settle: Sequence[DamageBudget] = (), about: Mapping[str, str] | None = None,
                       progress: Progress | None = None) -> Calibration:
    """The affine ablation of `vector` calibrated as `calibrate` calibrates an addition: a setting (layer, beta)
    moves the component along the vector beta of the way to its reference c_l = reference[l] at every layer from
    `layer` on (`calibration_passes.AffineFromLayer`); (0, 1.0) is the whole ablation. A gentler ablation
    (beta < 1, or only the later layers) is what the sweep offers against the garbage a whole one can write.
    `settle` as calibrate's; `about`: the direction's model, dataset, method and position, for the record."""
    layers, strengths = check_ablation(model, vector, reference, behaviour, prompts, neutral, layers, strengths,
                                       aim, max_new_tokens)
    family = AffineFromLayer(vector.detach().float(), {int(k): float(v) for k, v in reference.items()},
                             ModelView.of(model).n_layers, positions)
    return _calibrate(model, tokenizer, family, "affine", behaviour, list(prompts), list(neutral), layers,
                      strengths, aim, positions, budget, max_new_tokens, generate, progress, dict(about or {}),
                      settle)


def _calibrate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, family: Family, steering: str,
               behaviour: Behaviour, prompts: list[str], neutral: list[str], layers: list[int],
               alphas: list[float], aim: Aim, positions: Positions, budget: DamageBudget, max_new_tokens: int,
               generate: str, progress: Progress | None, about: dict,
               settle: Sequence[DamageBudget] = ()) -> Calibration:
    if generate not in GENERATE:
        raise InvalidInputError(f"Unknown generate {generate!r}: use 'frontier' or 'all'.")
    if not all(isinstance(b, DamageBudget) for b in settle):
        raise InvalidInputError("settle takes damage budgets (DamageBudget).")
    sign, n = (1.0 if aim == "raise" else -1.0), len(prompts)
    steps = {"done": 0, "total": len(layers) + 1}  # the screen's layers and one generate call, to begin with

    def tick() -> None:
        steps["done"] += 1
        if progress:
            progress(steps["done"], steps["total"])

    found = screen(model, tokenizer, behaviour, prompts, neutral, family, layers, alphas, max_rows=MAX_ROWS,
                   progress=lambda *_: tick())
    base_score = float(found.baseline_scores.mean())
    measured = {(layer, alpha): Setting(layer, alpha, float(found.scores[layer][k].mean()),
                                        sign * (float(found.scores[layer][k].mean()) - base_score),
                                        float(found.kl[layer][k].mean()), math.nan, math.nan, None, "", False)
                for layer in layers for k, alpha in enumerate(alphas)}
    baseline = Setting(-1, 0.0, base_score, 0.0, 0.0, math.nan, math.nan, None, "", False)

    def run(chosen: list[tuple[int, float]]) -> None:
        nonlocal baseline
        per_call = max(1, MAX_ROWS // n)
        calls = [chosen[i:i + per_call] for i in range(0, len(chosen), per_call)]
        steps["total"] = max(steps["total"], steps["done"] + len(calls))
        for part in calls:
            replies = generate_settings(model, tokenizer, prompts, part, family, max_new_tokens=max_new_tokens)
            for k, key in enumerate(part):
                rows = slice(k * n, (k + 1) * n)
                if key == (-1, 0.0):
                    baseline = _with_replies(baseline, replies, rows, behaviour)
                else:
                    measured[key] = _with_replies(measured[key], replies, rows, behaviour)
            tick()

    budgets = [budget, *settle]
    if generate == "all":
        run([(-1, 0.0), *measured])
    else:
        run([(-1, 0.0), *dict.fromkeys(k for b in budgets for k in first_to_generate(measured.values(), b))])
        for each in budgets:  # down each budget's candidates until its pick is settled
            while pending := still_to_generate(measured.values(), each, baseline.perplexity, CHUNK):
                run(pending)
    settings = tuple(measured[(layer, alpha)] for layer in layers for alpha in alphas)
    return Calibration(behaviour, aim, budget, baseline, settings,
                       pick_setting(settings, baseline, budget, behaviour.unit, steering), tuple(layers),
                       tuple(alphas), positions if isinstance(positions, str) else tuple(positions), about, n,
                       len(neutral), int(max_new_tokens), generate, steering)


@dataclass
class Unsteered:
    """The unsteered pass `measure` compares an intervention with: its rows and the neutral log-probs."""

    rows: Rows
    neutral: torch.Tensor
    n_prompts: int


@torch.no_grad()
def unsteered(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, behaviour: Behaviour,
              prompts: Sequence[str], neutral: Sequence[str], *, max_new_tokens: int = 8) -> Unsteered:
    """The model without any intervention, measured once for several `measure` calls on the same texts."""
    prompts, neutral = list(prompts), list(neutral)
    if not prompts or not neutral:
        raise InvalidInputError("Give at least one prompt and one neutral text.")
    rows, reference = measure_rows(model, tokenizer, behaviour, prompts, neutral, [0.0], None, None, max_new_tokens)
    return Unsteered(rows, reference, len(prompts))


@torch.no_grad()
def measure(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, behaviour: Behaviour, prompts: Sequence[str],
            neutral: Sequence[str], intervention: Callable[[], AbstractContextManager] | None, *,
            max_new_tokens: int = 8, label: tuple[int, float] = (-1, 0.0),
            plain: Unsteered | None = None) -> tuple[Setting, list[str]]:
    """Any one intervention (an ablation, a hand-picked addition; None: none) measured as the sweep measures a
    setting: the behaviour's score (effect against no intervention), the KL on the neutral texts, the replies'
    perplexity under the model without it and their repetition. `plain`: the unsteered pass on the same texts
    and tokens, when already measured. Returns the setting (layer, alpha = `label`) and every reply."""
    plain = plain or unsteered(model, tokenizer, behaviour, prompts, neutral, max_new_tokens=max_new_tokens)
    if intervention is None:
        rows = plain.rows
    else:
        rows, _ = measure_rows(model, tokenizer, behaviour, list(prompts), list(neutral), [1.0],
                           lambda _: intervention(), plain.neutral, max_new_tokens)
    base_score = sum(plain.rows.scores) / len(plain.rows.scores)
    setting = _setting(label[0], label[1], rows, slice(0, len(rows.texts)), behaviour, 1.0, base_score)
    return replace(setting, kl=nanmean(rows.kl)), rows.texts
