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
One layer is one batched generate call (every strength x prompt a row: `add` takes one alpha per row), one batched
forward over the neutral text and one unsteered forward that scores the generations."""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import pandas as pd
import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from .directions import Direction
from .errors import InvalidInputError, SettingError
from .generation import MAX_NEW_TOKENS, DecodingSettings, check_alpha
from .interventions import Positions, add
from .judging import is_refusal
from .model_view import ModelView
from .tokens import encode

FORMAT = "post-training-playground/calibration@1"
Kind = Literal["refusal", "truth", "tokens"]
Aim = Literal["raise", "lower"]
KINDS = ("refusal", "truth", "tokens")
AIMS = ("raise", "lower")
UNITS = {"refusal": "refusal log-odds", "truth": "P(TRUE) − P(FALSE)", "tokens": "log P(towards) − log P(away)"}
Progress = Callable[[int, int], None]


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


@dataclass(frozen=True)
class Pick:
    layer: int | None  # None: no setting is within the budget
    alpha: float | None
    reason: str


def pick_setting(settings: Sequence[Setting], baseline: Setting, budget: DamageBudget, unit: str = "") -> Pick:
    """The rule: among the settings within the damage budget whose effect is positive (moves the behaviour the
    aimed way), the one with the largest effect; on a tie, the smaller strength, then the earlier layer."""
    if not settings:
        raise InvalidInputError("No settings to pick from.")
    within = [s for s in settings if not budget.exceeded(s, baseline.perplexity)]
    useful = [s for s in within if s.effect > 0]
    if not useful:
        gentlest = min(settings, key=lambda s: (len(budget.exceeded(s, baseline.perplexity)), s.kl))
        why = "; ".join(budget.exceeded(gentlest, baseline.perplexity)) or "no positive effect"
        where = (f"none of the {len(settings)} settings is within it" if not within else
                 f"the {len(within)} of {len(settings)} settings within it do not move it the aimed way")
        return Pick(None, None, f"No setting moves the behaviour within the damage budget ({budget.describe()}): "
                                f"{where}; the gentlest, layer {gentlest.layer} alpha {gentlest.alpha:g}, has {why}.")
    best = max(useful, key=lambda s: (s.effect, -abs(s.alpha), -s.layer))
    rate = "" if best.refusal_rate is None else (
        f", refusal rate {_pct(baseline.refusal_rate)} → {_pct(best.refusal_rate)}")
    return Pick(best.layer, best.alpha,
                f"Layer {best.layer}, alpha {best.alpha:g}: the largest effect ({best.effect:+.3g} {unit}{rate}) of "
                f"the {len(useful)} of {len(settings)} settings that move the behaviour within the damage budget "
                f"({budget.describe()}); its damage: KL {best.kl:.3g}, perplexity {best.perplexity:.3g} (unsteered "
                f"{baseline.perplexity:.3g}), repetition {best.repetition:.2f}.")


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

    def frame(self) -> pd.DataFrame:
        """One row per setting, with whether it is within the budget and whether it is the pick."""
        rows = []
        for s in self.settings:
            rows.append({**asdict(s), "perplexity_ratio": s.perplexity / self.baseline.perplexity
                         if self.baseline.perplexity > 0 else math.nan,
                         "within_budget": not self.budget.exceeded(s, self.baseline.perplexity),
                         "picked": (s.layer, s.alpha) == (self.pick.layer, self.pick.alpha)})
        return pd.DataFrame(rows)

    def with_budget(self, budget: DamageBudget) -> "Calibration":
        """The same measurements, picked again under another budget (nothing is recomputed)."""
        return replace(self, budget=budget, pick=pick_setting(self.settings, self.baseline, budget,
                                                              self.behaviour.unit))

    def to_json(self) -> str:
        """Plain JSON (a measure that could not be taken, nan, is written as null), which from_json reads back."""
        body = {"format": FORMAT, **asdict(self)}
        body["positions"] = self.positions if isinstance(self.positions, str) else list(self.positions)
        return json.dumps(_nan_to_null(body), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        try:
            body = json.loads(text)
            if body.get("format") != FORMAT:
                raise ValueError(f"its format is {body.get('format')!r}, not {FORMAT!r}")
            settings = tuple(_setting_of(s) for s in body["settings"])
            positions = body["positions"] if isinstance(body["positions"], str) else tuple(body["positions"])
            return cls(Behaviour(body["behaviour"]["kind"], tuple(body["behaviour"]["towards"]),
                                 tuple(body["behaviour"]["away"]), body["behaviour"]["name"]),
                       body["aim"], DamageBudget(**body["budget"]), _setting_of(body["baseline"]), settings,
                       Pick(**body["pick"]), tuple(body["layers"]), tuple(body["alphas"]), positions,
                       dict(body["direction"]), body["n_prompts"], body["n_neutral"], body["max_new_tokens"])
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


# -- measuring -------------------------------------------------------------------------------------------------

class _FirstStepScore(LogitsProcessor):
    """Reads the behaviour's score off the first generated token's logits (the last prompt position), inside the
    same generate call that writes the replies; changes nothing."""

    def __init__(self, behaviour: Behaviour):
        self.behaviour, self.scores = behaviour, None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.scores is None:
            self.scores = self.behaviour.score(torch.log_softmax(scores.float(), dim=-1)).cpu()
        return scores


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = model.generation_config.eos_token_id
    stops = {eos} if isinstance(eos, int) else set(eos or [])
    return stops | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def reply_lengths(new_ids: torch.Tensor, stops: set[int]) -> list[int]:
    """Each reply's token count up to its first stop token (not counted)."""
    out = []
    for row in new_ids.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        out.append(cut)
    return out


def repetition(tokens: Sequence[int]) -> float:
    """Share of the token pairs that repeat an earlier pair: 0 for text without repeats, towards 1 for a loop
    (a perplexity cannot see this: a loop is very predictable). nan below two pairs."""
    pairs = list(zip(tokens, tokens[1:]))
    return 1.0 - len(set(pairs)) / len(pairs) if len(pairs) >= 2 else math.nan


@torch.no_grad()
def reply_perplexities(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       new_ids: torch.Tensor, lengths: Sequence[int]) -> list[float]:
    """Each reply's perplexity under `model` (run as it is: call it outside any steering), from the token ids (no
    round trip through text); nan for an empty reply. Only the reply's positions are unembedded."""
    view = ModelView.of(model)
    steps = new_ids.shape[1]
    keep = torch.arange(steps, device=new_ids.device)[None, :] < torch.as_tensor(lengths, device=new_ids.device)[:, None]
    ids = torch.cat([input_ids, new_ids], dim=1)
    mask = torch.cat([attention_mask, keep.long()], dim=1)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    hidden = view.decoder_stack(input_ids=ids, attention_mask=mask, position_ids=positions,
                                use_cache=False).last_hidden_state[:, -steps - 1:-1]
    token_lp = torch.cat([  # [rows, steps]; 16 rows at a time, so a 262k-token vocabulary stays ~270 MB at once
        torch.log_softmax(view.logits(hidden[i:i + 16]).float(), dim=-1).gather(-1, new_ids[i:i + 16, :, None])
        .squeeze(-1) for i in range(0, hidden.shape[0], 16)])
    out = []
    for row, n in enumerate(lengths):
        out.append(math.exp(-float(token_lp[row, :n].mean())) if n > 0 else math.nan)
    return out


@torch.no_grad()
def neutral_log_probs(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[rows, vocab] float32 next-token log-probabilities at the end of each neutral text."""
    view = ModelView.of(model)
    hidden = view.decoder_stack(input_ids=input_ids, attention_mask=attention_mask,
                                use_cache=False).last_hidden_state[:, -1]
    return torch.log_softmax(view.logits(hidden).float(), dim=-1)


def kl_from(reference: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """[n] KL(reference || changed) of distributions given as log-probabilities."""
    return (reference.exp() * (reference - changed)).sum(dim=-1)


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


@dataclass
class _Rows:
    """Measurements per batch row of one pass: scores, replies, and what is derived from them."""

    scores: list[float]
    texts: list[str]
    kl: list[float]
    perplexity: list[float]
    repetition: list[float]


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


Steer = Callable[[Sequence[float]], AbstractContextManager]  # one alpha per batch row -> the steering


@torch.no_grad()
def _measure(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, behaviour: Behaviour, prompts: list[str],
             neutral: list[str], alphas: Sequence[float], steer: Steer | None, reference_neutral: torch.Tensor | None,
             max_new_tokens: int) -> tuple[_Rows, torch.Tensor]:
    """One batched pass per kind of text: the prompts (one generate call) and the neutral texts (one forward), each
    repeated once per alpha (row k * n + j is text j under alphas[k]), under `steer(row_alphas)` (None:
    unsteered). Returns the rows' measurements and the neutral log-probs (the baseline's, for the steered KL)."""
    view = ModelView.of(model)
    repeats = len(alphas)
    batch, plain = encode(tokenizer, prompts, view.device), encode(tokenizer, neutral, view.device)
    ids, mask = batch.input_ids.repeat(repeats, 1), batch.attention_mask.repeat(repeats, 1)
    reader = _FirstStepScore(behaviour)
    kwargs = DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs()
    with steer([a for a in alphas for _ in prompts]) if steer else nullcontext():
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs,
                             logits_processor=LogitsProcessorList([reader]))
    with steer([a for a in alphas for _ in neutral]) if steer else nullcontext():
        steered_neutral = neutral_log_probs(model, plain.input_ids.repeat(repeats, 1),
                                            plain.attention_mask.repeat(repeats, 1))
    new_ids = out[:, ids.shape[1]:]
    lengths = reply_lengths(new_ids, stop_ids(model, tokenizer))
    perplexity = reply_perplexities(model, ids, mask, new_ids, lengths)  # unsteered: outside the steering
    kl = kl_from(reference_neutral, steered_neutral).tolist() if reference_neutral is not None \
        else [0.0] * steered_neutral.shape[0]
    return _Rows(reader.scores.tolist(), tokenizer.batch_decode(new_ids, skip_special_tokens=True), kl, perplexity,
                 [repetition(r[:n]) for r, n in zip(new_ids.tolist(), lengths)]), steered_neutral


def _setting(layer: int, alpha: float, rows: _Rows, part: slice, behaviour: Behaviour, sign: float,
             baseline_score: float) -> Setting:
    score = sum(rows.scores[part]) / len(rows.scores[part])
    texts = rows.texts[part]
    rate = sum(map(is_refusal, texts)) / len(texts) if behaviour.kind == "refusal" else None
    return Setting(layer, alpha, score, sign * (score - baseline_score), _nanmean(rows.kl[part]),
                   _nanmean(rows.perplexity[part]), _nanmean(rows.repetition[part]), rate, texts[0])


@torch.no_grad()
def calibrate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, direction: Direction,
              behaviour: Behaviour, prompts: Sequence[str], neutral: Sequence[str], *, layers: Sequence[int],
              alphas: Sequence[float], aim: Aim = "raise", positions: Positions = "all",
              budget: DamageBudget = DamageBudget(), max_new_tokens: int = 8,
              progress: Progress | None = None) -> Calibration:
    """Add `alpha` x (the direction's unit vector at the layer) x (its typical residual norm there) at every
    (layer, alpha), on formatted held-out `prompts` (the effect) and raw `neutral` texts (the KL); measure both and
    pick by rule (`pick_setting`). `progress(done, total)` hears of every layer."""
    layers, alphas = check_calibration(model, direction, behaviour, prompts, neutral, layers, alphas, aim,
                                       max_new_tokens)
    prompts, neutral = list(prompts), list(neutral)
    sign, n = (1.0 if aim == "raise" else -1.0), len(prompts)
    unit_vectors = direction.steering_vectors(layers, 1.0)  # each row's alpha scales it
    base_rows, reference = _measure(model, tokenizer, behaviour, prompts, neutral, [0.0], None, None,
                                    max_new_tokens)
    baseline = _setting(-1, 0.0, base_rows, slice(0, n), behaviour, sign, 0.0)
    baseline = replace(baseline, effect=0.0)
    reference = reference.repeat(len(alphas), 1)
    settings = []
    for done, layer in enumerate(layers):
        def steer(row_alphas: Sequence[float], layer: int = layer) -> AbstractContextManager:
            return add(model, {layer: unit_vectors[layer]}, list(row_alphas), positions=positions)

        rows, _ = _measure(model, tokenizer, behaviour, prompts, neutral, alphas, steer, reference, max_new_tokens)
        for k, alpha in enumerate(alphas):
            setting = _setting(layer, alpha, rows, slice(k * n, (k + 1) * n), behaviour, sign, baseline.score)
            settings.append(replace(setting, kl=_nanmean(rows.kl[k * len(neutral):(k + 1) * len(neutral)])))
        if progress:
            progress(done + 1, len(layers))
    settings = tuple(settings)
    info = direction.info
    return Calibration(behaviour, aim, budget, baseline, settings,
                       pick_setting(settings, baseline, budget, behaviour.unit), tuple(layers), tuple(alphas),
                       positions if isinstance(positions, str) else tuple(positions),
                       {"model": info.model, "dataset": info.dataset, "method": info.method,
                        "position": info.position}, n, len(neutral), int(max_new_tokens))


@dataclass
class Unsteered:
    """The unsteered pass `measure` compares an intervention with: its rows and the neutral log-probs."""

    rows: _Rows
    neutral: torch.Tensor
    n_prompts: int


@torch.no_grad()
def unsteered(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, behaviour: Behaviour,
              prompts: Sequence[str], neutral: Sequence[str], *, max_new_tokens: int = 8) -> Unsteered:
    """The model without any intervention, measured once for several `measure` calls on the same texts."""
    prompts, neutral = list(prompts), list(neutral)
    if not prompts or not neutral:
        raise InvalidInputError("Give at least one prompt and one neutral text.")
    rows, reference = _measure(model, tokenizer, behaviour, prompts, neutral, [0.0], None, None, max_new_tokens)
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
        rows, _ = _measure(model, tokenizer, behaviour, list(prompts), list(neutral), [1.0],
                           lambda _: intervention(), plain.neutral, max_new_tokens)
    base_score = sum(plain.rows.scores) / len(plain.rows.scores)
    setting = _setting(label[0], label[1], rows, slice(0, len(rows.texts)), behaviour, 1.0, base_score)
    return replace(setting, kl=_nanmean(rows.kl)), rows.texts
