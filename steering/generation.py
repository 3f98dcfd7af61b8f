"""Generation, steered or not, batched: the four texts a user compares come from one generate call per model."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from .directions import Direction
from .errors import InvalidInputError, SettingError
from .interventions import Positions, Rows, ablate, add, affine_ablate
from .model_view import UNEMBEDDINGS, DecodingUnembedding, ModelView, decoding_unembedding
from .tokens import chat_prompt, encode

MAX_NEW_TOKENS = 1024
MAX_ALPHA = 100.0  # in units of the residual norm: beyond this every text is noise
TOLERATED_ALPHA = 1.0  # beyond about 1x the residual norm the demo pair writes noise (0.4 at layer 9 already does)
Ablation = Literal["affine", "project"]
ABLATION_HELP = {
    "affine": "affine (ACE, Marshall et al. 2024): at the chosen layers, set the component along the direction to "
              "its mean on reference (harmless) prompts, so the stream looks as it does there; keeps text readable.",
    "project": "project (Arditi et al. 2024): remove the component at every layer and from every write; on the "
               "demo pair it breaks text (\"uved uved…\"), since the direction is dominated by one huge dimension.",
}


def alpha_warning(alpha: float) -> str | None:
    """One sentence when an addition strength is allowed but far past what the models tolerate (None otherwise)."""
    if not math.isfinite(alpha) or abs(alpha) <= TOLERATED_ALPHA:
        return None
    return (f"alpha {alpha:g} is far past what these models tolerate: above about {TOLERATED_ALPHA:g} × the residual "
            "norm the text turns to noise.")


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """A steering strength as a float: finite (a NaN alpha steers every token to NaN, and an empty text follows)
    and within ±MAX_ALPHA."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise SettingError(f"{what} must be a number between -{MAX_ALPHA:g} and {MAX_ALPHA:g}, "
                           f"not {alpha!r}.") from None
    if not math.isfinite(value) or abs(value) > MAX_ALPHA:
        raise SettingError(f"{what} must be a finite number between -{MAX_ALPHA:g} and {MAX_ALPHA:g}, not {alpha}.")
    return value


@dataclass(frozen=True)
class SteeringSpec:
    """What to do with a direction during generation.

    add:    add alpha * (unit vector of layer l) * (typical residual norm at l) at each layer in `layers`
            (units='raw': alpha * the stored vector as is).
    ablate: ablation="project": project the vector of layer `layers[0]` out of the residual stream at every layer
            (Arditi et al.); ablation="affine": at each layer in `layers` only, set the component along that vector
            to the steered model's mean on reference prompts, `reference` [n_layers, d] (ACE; compare() sets it per
            model from its `references`). Projection breaks the demo pair's text; affine does not.
    """

    direction: Direction
    mode: Literal["add", "ablate"] = "add"
    layers: tuple[int, ...] = (0,)
    alpha: float = 1.0
    positions: Positions = "all"
    units: Literal["resid", "raw"] = "resid"
    ablation: Ablation = "project"
    reference: torch.Tensor | None = field(default=None, compare=False, repr=False)  # [n_layers, d]

    def __post_init__(self) -> None:
        check_alpha(self.alpha)  # refused where the spec is made, before any model is touched

    def validate(self, model: PreTrainedModel) -> None:
        view = ModelView.of(model)
        self.direction.check_fits(view.n_layers, view.d_model)
        if not self.layers:
            raise InvalidInputError("Choose at least one layer.")
        for layer in self.layers:
            view.check_layer(layer)
        if self.mode not in ("add", "ablate"):
            raise InvalidInputError(f"Unknown mode {self.mode!r}: use 'add' or 'ablate'.")
        check_alpha(self.alpha)
        if self.mode == "ablate" and self.ablation not in ABLATION_HELP:
            raise InvalidInputError(f"Unknown ablation {self.ablation!r}: use 'affine' or 'project'.")
        if self.mode == "ablate" and self.ablation == "affine" and self.reference is None:
            raise InvalidInputError("The affine ablation needs the steered model's mean residual on reference "
                                    "prompts: pass references= to compare() (steering.playground.mean_residuals).")

    @contextmanager
    def applied(self, model: PreTrainedModel, rows: Rows = None) -> Iterator[None]:
        self.validate(model)
        if self.mode == "ablate" and self.ablation == "affine":
            unit = torch.nn.functional.normalize(self.direction.at(self.layers[0]).float(), dim=0)
            reference = {layer: float(self.reference[layer].float() @ unit) for layer in self.layers}
            with affine_ablate(model, unit, reference, layers=self.layers, positions=self.positions, rows=rows):
                yield
        elif self.mode == "ablate":
            with ablate(model, self.direction.at(self.layers[0]), positions=self.positions, rows=rows):
                yield
        else:
            vectors = self.direction.steering_vectors(list(self.layers), self.alpha, self.units)
            with add(model, vectors, positions=self.positions, rows=rows):
                yield


@dataclass(frozen=True)
class DecodingSettings:
    max_new_tokens: int = 32
    greedy: bool = True
    seed: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    unembedding: DecodingUnembedding = "plain"  # how the logits are computed (model_view.decoding_unembedding)

    def generate_kwargs(self) -> dict:
        if self.unembedding not in UNEMBEDDINGS:
            raise InvalidInputError(f"Unknown unembedding {self.unembedding!r}: use one of {', '.join(UNEMBEDDINGS)}.")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise InvalidInputError(f"max new tokens must be between 1 and {MAX_NEW_TOKENS}, not {self.max_new_tokens}.")
        if not self.greedy and not (0 < self.temperature <= 100 and 0 < self.top_p <= 1):  # NaN fails both too
            raise SettingError(f"Sampling needs a temperature above 0 (at most 100) and top_p above 0 and at most 1, "
                               f"not temperature {self.temperature} and top_p {self.top_p}.")
        if self.greedy:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False, "top_p": None, "top_k": None,
                    "temperature": None}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": None}


def format_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], chat: bool = True) -> list[str]:
    """Prompts through the pair's chat template (both models, as in the paper), or raw text."""
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise InvalidInputError("Type at least one prompt.")
    return [chat_prompt(tokenizer, p) for p in prompts] if chat else list(prompts)


TokensSoFar = Callable[[torch.Tensor], None]  # every row's new tokens so far, [rows, steps]


class _TokenProgress(StoppingCriteria):
    """After every decoding step: reports (tokens generated, max new tokens) and hands every row's new tokens so far
    to `on_tokens` (a stopping criterion is the one per-step hook generate offers with the ids; it stops nothing,
    so the tokens are those of the same single batched call as without it)."""

    def __init__(self, report: Callable[[int, int], None] | None, total: int, prompt_length: int,
                 on_tokens: TokensSoFar | None = None):
        self.report, self.total, self.done = report, total, 0
        self.prompt_length, self.on_tokens = prompt_length, on_tokens

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        self.done += 1
        if self.report:
            self.report(min(self.done, self.total), self.total)
        if self.on_tokens:
            self.on_tokens(input_ids[:, self.prompt_length:])
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    steering: SteeringSpec | Sequence[SteeringSpec] | None = None,
    steered_rows: Rows = None,
    decoding: DecodingSettings = DecodingSettings(),
    progress: Callable[[int, int], None] | None = None,
    on_tokens: TokensSoFar | None = None,
) -> list[str]:
    """Continue already formatted texts; steering applies to `steered_rows` (all rows when None); `progress(done,
    total)` hears of every new token, `on_tokens(ids)` gets every row's new tokens so far after each step (to
    stream them); a prompt too long for the context is refused before any work. A list of steerings (or a
    composition.Composition) applies them all, in list order."""
    steering = _as_steering(steering)
    view = ModelView.of(model)
    batch = encode(tokenizer, texts, view.device)
    check_fits_context(model, tokenizer, texts, decoding.max_new_tokens, batch.input_ids.shape[1])
    torch.manual_seed(decoding.seed)
    context = steering.applied(model, steered_rows) if steering is not None else nullcontext()
    watch = _TokenProgress(progress, decoding.max_new_tokens, batch.input_ids.shape[1], on_tokens)
    extra = {"stopping_criteria": StoppingCriteriaList([watch])} if progress or on_tokens else {}
    with context, decoding_unembedding(model, decoding.unembedding):
        out = model.generate(**batch, **decoding.generate_kwargs(), **extra)
    return tokenizer.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)


def _as_steering(steering):
    """A list or tuple of SteeringSpec as one composition.Composition; anything else as it is."""
    if isinstance(steering, (list, tuple)):
        from .composition import compose  # composition builds on this module

        return compose(steering)
    return steering


def check_fits_context(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                       max_new_tokens: int, n_tokens: int | None = None) -> None:
    """Refuse, before any work, prompts that with the new tokens would not fit the model's context."""
    limit = getattr(model.config, "max_position_embeddings", None)
    n_tokens = encode(tokenizer, texts).input_ids.shape[1] if n_tokens is None else n_tokens
    if limit and n_tokens + max_new_tokens > limit:
        raise InvalidInputError(f"The prompt ({n_tokens} tokens) plus {max_new_tokens} new tokens exceeds this "
                                f"model's context of {limit} tokens: shorten the prompt.")


@dataclass
class Comparison:
    """The four generations per prompt: base, base steered, post-trained, post-trained steered."""

    table: pd.DataFrame  # prompt, model, steered, text
    settings: dict = field(default_factory=dict)


def compare(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    steering: SteeringSpec | Sequence[SteeringSpec],
    *,
    decoding: DecodingSettings = DecodingSettings(),
    chat: bool = True,
    progress: Callable[[int, int], None] | None = None,
    references: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    on_text: Callable[[list[dict]], None] | None = None,
) -> Comparison:
    """Unsteered and steered texts of every model, each model in one batched generate call; `progress(done, total)`
    counts new tokens over all models (total = models x max new tokens). `references[role]` [n_layers, d]: that
    model's mean residual on reference prompts, which the affine ablation needs (each model its own); or a sequence
    with one such mapping per steering (None where none is needed), each affine ablation its own. `on_text(rows)`
    streams: after every step of a model's one generate call, its rows so far, as the table's (prompt, model,
    steered, text); greedy tokens are the same as without it."""
    steering = _as_steering(steering)
    texts = format_prompts(tokenizer, prompts, chat)
    kept = [p for p in prompts if p.strip()]
    from .composition import for_model  # composition builds on this module

    specs = {role: for_model(steering, role, references) for role in models}
    for role, model in models.items():
        specs[role].validate(model)
    check_fits_context(next(iter(models.values())), tokenizer, texts, decoding.max_new_tokens)
    rows = []
    total = len(models) * decoding.max_new_tokens
    for i, (role, model) in enumerate(models.items()):
        step = (lambda done, _, i=i: progress(i * decoding.max_new_tokens + done, total)) if progress else None
        stream = (lambda ids, role=role: on_text(_rows(kept, role, tokenizer.batch_decode(
            ids, skip_special_tokens=True)))) if on_text else None
        outputs = generate(model, tokenizer, texts + texts, steering=specs[role],
                           steered_rows=list(range(len(texts), 2 * len(texts))), decoding=decoding, progress=step,
                           on_tokens=stream)
        rows += _rows(kept, role, outputs)
    return Comparison(pd.DataFrame(rows), {"chat": chat, **decoding.__dict__})


def _rows(prompts: Sequence[str], role: str, outputs: Sequence[str]) -> list[dict]:
    """The table's rows of one model's batch, whose first half is unsteered and second half steered."""
    n = len(prompts)
    return [{"prompt": prompt, "model": role, "steered": steered, "text": outputs[j + n * steered]}
            for j, prompt in enumerate(prompts) for steered in (False, True)]
