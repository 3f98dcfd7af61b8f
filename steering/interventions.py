"""Interventions on the residual stream as context managers: record, add, ablate, patch.

All are built on one primitive, `hooks()`, which registers plain PyTorch hooks at named hook points
(see architectures.py) and always removes them on exit, also after an exception. They work around a
single forward pass and around `generate` with the KV cache on. `run_until` runs the decoder stack only as far
as one hook point (reading early layers without paying for the rest of the model).

Token positions are offsets from the end of the prompt: -1 is the last prompt token, 0 the first generated
token (the one fed back after the prompt), so left padding never shifts them. The prompt length is taken from
the first pass that starts a sequence (empty KV cache); pass `prompt_length=` to fix it yourself, e.g. when
re-running a growing sequence without a cache.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Union

import torch
from torch import nn

from .errors import InvalidInputError
from .model_view import ModelView

Positions = Union[Literal["prompt", "generated", "all"], Sequence[int]]
Rows = Union[Sequence[int], torch.Tensor, None]
# A hook function gets the activation at its hook point and each token's offset from the prompt's end, and
# returns a replacement or None to leave it as is.
HookFn = Callable[[torch.Tensor, torch.Tensor], Union[torch.Tensor, None]]


class _PositionTracker:
    """Pre-hook on the decoder stack: offsets from the prompt's end of the tokens in the pass under way."""

    def __init__(self, prompt_length: int | None):
        self.fixed = prompt_length is not None
        self.prompt_length = prompt_length
        self.offsets = torch.empty(0, dtype=torch.long)  # [pos]

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        tokens = kwargs.get("input_ids", args[0] if args else None)
        if tokens is None:
            tokens = kwargs["inputs_embeds"]
        seq = tokens.shape[1]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        recomputing = kwargs.get("use_cache") is False and self.prompt_length is not None
        if not self.fixed and past == 0 and not recomputing:
            self.prompt_length = seq
        self.offsets = torch.arange(past, past + seq) - self.prompt_length


_LAYER_POINTS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "neurons")
FINAL = "resid_final"  # the one hook point without a layer: the final norm's input


def _split(name: str) -> tuple[str, int]:
    if name == FINAL:
        return FINAL, -1
    kind, _, layer = name.partition(".")
    if kind not in _LAYER_POINTS or not layer.lstrip("-").isdigit():
        raise InvalidInputError(f"Unknown hook point '{name}': use resid_pre.L, resid_post.L, attn_out.L, mlp_out.L, "
                                f"neurons.L or {FINAL}.")
    return kind, int(layer)


def _register(view: ModelView, name: str, fn: HookFn, tracker: _PositionTracker) -> torch.utils.hooks.RemovableHandle:
    kind, layer = _split(name)

    def on_input(module: nn.Module, args: tuple, kwargs: dict):
        if args:
            new = fn(args[0], tracker.offsets)
            return None if new is None else ((new, *args[1:]), kwargs)
        new = fn(kwargs["hidden_states"], tracker.offsets)
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    def on_output(module: nn.Module, args: tuple, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = fn(hidden, tracker.offsets)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    inputs = {"resid_pre": view.layer, "neurons": view.mlp_down, FINAL: lambda _: view.final_norm}
    if kind in inputs:
        return inputs[kind](layer).register_forward_pre_hook(on_input, with_kwargs=True)
    outputs = {"resid_post": view.layer, "attn_out": view.attn_out, "mlp_out": view.mlp_out}
    return outputs[kind](layer).register_forward_hook(on_output)


@contextmanager
def hooks(
    model: nn.Module, fns: Iterable[tuple[str, HookFn]], *, prompt_length: int | None = None
) -> Iterator[_PositionTracker]:
    """Run `fns` at their hook points ("resid_pre.3", ...) for every forward pass inside the block."""
    view = ModelView.of(model)
    tracker = _PositionTracker(prompt_length)
    handles = []
    try:
        handles.append(view.decoder_stack.register_forward_pre_hook(tracker, with_kwargs=True))
        for name, fn in fns:
            handles.append(_register(view, name, fn, tracker))
        yield tracker
    finally:
        for handle in handles:
            handle.remove()


class _StopForward(Exception):
    """Raised by run_until's hook once its hook point has been reached."""


def run_until(model: nn.Module, point: str, **inputs: torch.Tensor) -> None:
    """Run the decoder stack on `inputs` (input_ids and attention_mask, or inputs_embeds, on the model's device)
    and stop as soon as hook point `point` is reached: nothing after it runs (no later layer, no final norm, no
    unembedding). Hooks set up around the call (record, patch, ...) see the pass up to there as usual."""
    def stop(hidden: torch.Tensor, offsets: torch.Tensor) -> None:
        raise _StopForward

    with hooks(model, [(point, stop)]):
        try:
            ModelView.of(model).decoder_stack(**inputs, use_cache=False)
        except _StopForward:
            pass


def position_mask(offsets: torch.Tensor, positions: Positions) -> torch.Tensor:
    """[pos] bool: which tokens of the pass the positions select."""
    if positions == "all":
        return torch.ones_like(offsets, dtype=torch.bool)
    if positions == "prompt":
        return offsets < 0
    if positions == "generated":
        return offsets >= 0
    if isinstance(positions, str):
        raise InvalidInputError(f"Unknown positions '{positions}': use 'prompt', 'generated', 'all' or offsets.")
    if isinstance(positions, range) and positions.step == 1:  # "from offset s on": by its bounds, not a lookup
        return (offsets >= positions.start) & (offsets < positions.stop)
    return torch.isin(offsets, torch.as_tensor(list(positions), dtype=offsets.dtype))


def _selected(hidden: torch.Tensor, offsets: torch.Tensor, positions: Positions, rows: Rows) -> torch.Tensor:
    """[batch, pos] bool on the hidden state's device: the tokens an intervention may write."""
    pos = position_mask(offsets, positions).to(hidden.device)
    row = torch.ones(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    if rows is not None:
        rows_t = torch.as_tensor(rows, device=hidden.device)
        row = rows_t if rows_t.dtype == torch.bool else torch.zeros_like(row).index_fill_(0, rows_t, True)
    return row[:, None] & pos[None, :]


def _write(hidden: torch.Tensor, selected: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """`new` at the selected tokens, `hidden` itself everywhere else. A selection, not a multiplication by a 0/1
    mask: 0 x NaN is NaN, so a non-finite vector would otherwise reach (and empty) the rows left unsteered; here
    an unselected token is bit-identical to a run without hooks. (No early exit when none is selected: that test
    would synchronise a GPU at every hook call.)"""
    return torch.where(selected.unsqueeze(-1), new, hidden)


@dataclass
class Recording:
    """Activations captured per hook point: one [batch, n_selected_pos, d] tensor per forward pass."""

    positions: Positions
    activations: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        """All passes' activations at a hook point, concatenated along the batch."""
        return torch.cat(self.activations[name], dim=0)


@contextmanager
def record(
    model: nn.Module,
    points: Sequence[str],
    positions: Positions = (-1,),
    *,
    prompt_length: int | None = None,
) -> Iterator[Recording]:
    """Record activations (float32, detached) at hook points and positions during the block."""
    recording = Recording(positions, {name: [] for name in points})

    def recorder(name: str) -> HookFn:
        def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> None:
            if isinstance(positions, str):
                index = position_mask(offsets, positions).nonzero().squeeze(-1)
            else:  # keep the order the caller asked for
                where = {int(o): i for i, o in enumerate(offsets)}
                index = torch.tensor([where[p] for p in positions if p in where], dtype=torch.long)
            recording.activations[name].append(hidden[:, index.to(hidden.device)].detach().float())

        return fn

    with hooks(model, [(name, recorder(name)) for name in points], prompt_length=prompt_length):
        yield recording


def _layer_vectors(vectors: Mapping[int, torch.Tensor] | torch.Tensor, view: ModelView) -> dict[int, torch.Tensor]:
    items = vectors.items() if isinstance(vectors, Mapping) else [(layer, vectors) for layer in range(view.n_layers)]
    return {view.check_layer(int(layer)): v for layer, v in items}


class _Cast:
    """A vector cast once to each (dtype, device) a hook sees."""

    def __init__(self, vector: torch.Tensor):
        self.vector = vector.detach()
        self._cache: dict[tuple, torch.Tensor] = {}

    def like(self, hidden: torch.Tensor) -> torch.Tensor:
        key = (hidden.dtype, hidden.device)
        if key not in self._cache:
            self._cache[key] = self.vector.to(device=hidden.device, dtype=hidden.dtype)
        return self._cache[key]


def _rows_of(vector: torch.Tensor, hidden: torch.Tensor, what: str) -> torch.Tensor:
    """A per-row vector [rows, d] (one per batch row) as [rows, 1, d]; a plain vector [d] as it is."""
    if vector.dim() == 1:
        return vector
    if vector.shape[0] != hidden.shape[0]:
        raise InvalidInputError(f"{what}: {vector.shape[0]} per-row vectors for a batch of {hidden.shape[0]} rows; "
                                "give one vector per batch row.")
    return vector[:, None, :]


@contextmanager
def add(
    model: nn.Module,
    vectors: Mapping[int, torch.Tensor],
    alpha: float | Sequence[float] = 1.0,
    *,
    positions: Positions = "all",
    rows: Rows = None,
    prompt_length: int | None = None,
) -> Iterator[None]:
    """Add `alpha * vectors[layer]` to the residual stream entering each given layer. A sequence of alphas gives
    each batch row its own strength (a sweep in one batch); a vector of shape [rows, d] gives each batch row its
    own vector (many candidates in one batch; a zero row leaves that row exactly as it is)."""
    view = ModelView.of(model)
    per_row = not isinstance(alpha, (int, float))
    scale = _Cast(torch.as_tensor(alpha, dtype=torch.float32).reshape(-1, 1, 1)) if per_row else None

    def adder(vector: torch.Tensor) -> HookFn:
        cast = _Cast(vector if per_row else vector * alpha)

        def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
            delta = _rows_of(cast.like(hidden), hidden, "add")
            selected = _selected(hidden, offsets, positions, rows)
            if per_row:  # a row of alpha 0 is not steered at all (a sweep's other layers, its baseline)
                row_alpha = scale.like(hidden)
                delta, selected = delta * row_alpha, selected & (row_alpha.reshape(-1, 1) != 0)
            return _write(hidden, selected, hidden + delta)

        return fn

    fns = [(f"resid_pre.{layer}", adder(v)) for layer, v in _layer_vectors(vectors, view).items()]
    with hooks(model, fns, prompt_length=prompt_length):
        yield


@contextmanager
def ablate(
    model: nn.Module,
    direction: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    positions: Positions = "all",
    rows: Rows = None,
    prompt_length: int | None = None,
) -> Iterator[None]:
    """Project one direction out of the residual stream (Arditi et al. 2024): at the input of every layer and
    from what attention and the MLP write, so no component along it survives anywhere in the stream."""
    view = ModelView.of(model)
    unit = _Cast(direction / direction.norm())

    def project_out(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        u = unit.like(hidden)
        return _write(hidden, _selected(hidden, offsets, positions, rows), hidden - (hidden @ u).unsqueeze(-1) * u)

    chosen = range(view.n_layers) if layers is None else [view.check_layer(layer) for layer in layers]
    fns = [(f"{kind}.{layer}", project_out) for layer in chosen for kind in ("resid_pre", "attn_out", "mlp_out")]
    with hooks(model, fns, prompt_length=prompt_length):
        yield


@contextmanager
def patch(
    model: nn.Module,
    values: Mapping[str, torch.Tensor],
    positions: Sequence[int],
    *,
    rows: Rows = None,
    prompt_length: int | None = None,
) -> Iterator[None]:
    """Replace activations at hook points with stored ones: values[name] is [rows, len(positions), d]."""
    row_index = None if rows is None else torch.as_tensor(rows)

    def patcher(stored: torch.Tensor) -> HookFn:
        def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor | None:
            where = {int(o): i for i, o in enumerate(offsets)}
            present = [(k, where[p]) for k, p in enumerate(positions) if p in where]
            if not present:
                return None
            hidden = hidden.clone()
            src, dst = (torch.tensor(idx, device=hidden.device) for idx in zip(*present))
            value = stored.to(device=hidden.device, dtype=hidden.dtype)[:, src]
            if row_index is None:
                hidden[:, dst] = value
            else:
                hidden[row_index.to(hidden.device)[:, None], dst[None, :]] = value
            return hidden

        return fn

    with hooks(model, [(name, patcher(v)) for name, v in values.items()], prompt_length=prompt_length):
        yield


def _affine_selected(hidden: torch.Tensor, offsets: torch.Tensor, positions: Positions, rows: Rows) -> torch.Tensor:
    """_selected, with a contiguous `range` of offsets tested by its bounds (so range(-5, 10_000), "every token from
    the 5th-last prompt token on, generated ones included", costs no per-pass lookup)."""
    if isinstance(positions, range) and positions.step == 1:
        pos = ((offsets >= positions.start) & (offsets < positions.stop)).to(hidden.device)
        return _selected(hidden, offsets, "all", rows) & pos[None, :]
    return _selected(hidden, offsets, positions, rows)


@contextmanager
def affine_ablate(
    model: nn.Module,
    direction: torch.Tensor,
    reference: Mapping[int, float | torch.Tensor],
    *,
    layers: Sequence[int] | None = None,
    positions: Positions = "all",
    rows: Rows = None,
    prompt_length: int | None = None,
    strength: float | Sequence[float] = 1.0,
) -> Iterator[None]:
    """Affine directional ablation (Marshall, Scherlis & Belrose 2024, "Refusal in LLMs is an affine function",
    ACE): at the input of each layer l, set the component along the unit direction u to a reference value c_l
    instead of zero, h' = h - ((h . u) - c_l) u, at the selected positions only. `reference[l]` is c_l, typically
    the mean projection of the residual stream entering layer l on the "negative" (e.g. harmless) prompts, so the
    stream looks as it does there along u and nothing else changes. Layers default to every layer in `reference`
    (or all layers); a layer without a reference raises. Positions as elsewhere; a `range` of offsets such as
    range(-5, 10_000) selects every token from the 5th-last prompt token on, generated tokens included.
    Per row: `direction` [rows, d] and `reference[l]` [rows] give each batch row its own direction and c_l (many
    candidates in one batch). `strength` beta moves the component only beta of the way to c_l,
    h' = h - beta ((h . u) - c_l) u (1: the ablation; 0: nothing), one for all rows or one per row (a sweep)."""
    view = ModelView.of(model)
    per_row = direction.dim() == 2
    unit = _Cast(direction / direction.norm(dim=-1, keepdim=True) if per_row else direction / direction.norm())
    chosen = (sorted(int(k) for k in reference) if layers is None else list(layers)) or range(view.n_layers)
    chosen = [view.check_layer(int(layer)) for layer in chosen]
    missing = [layer for layer in chosen if layer not in reference]
    if missing:
        raise InvalidInputError(f"affine_ablate: no reference value for layers {missing}; give reference[l] for "
                                "every layer you ablate at.")

    beta = _Cast(torch.as_tensor(strength, dtype=torch.float32).reshape(-1, 1, 1))
    if not bool(torch.isfinite(beta.vector).all()):
        raise InvalidInputError("affine_ablate: a strength must be a finite number.")
    if beta.vector.numel() != 1 and per_row:
        raise InvalidInputError("affine_ablate: per-row strengths go with one direction for all rows.")
    fns = [(f"resid_pre.{layer}", _affine_rows(unit, reference[layer], positions, rows) if per_row
            else _affine_one(unit, float(reference[layer]), positions, rows, beta)) for layer in chosen]
    with hooks(model, fns, prompt_length=prompt_length):
        yield


def _affine_one(unit: _Cast, c: float, positions: Positions, rows: Rows, beta: _Cast) -> HookFn:
    """h - beta ((h . u) - c) u at the selected tokens, one direction for every row; beta one for all rows (a 1 is
    not multiplied: the full ablation stays bit for bit what it was) or one per row ([rows, 1, 1])."""
    whole = beta.vector.numel() == 1 and float(beta.vector) == 1.0

    def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        u = unit.like(hidden)
        shift = (hidden @ u - c).unsqueeze(-1) * u
        if not whole:
            if beta.vector.numel() > 1 and beta.vector.shape[0] != hidden.shape[0]:
                raise InvalidInputError(f"affine_ablate: {beta.vector.shape[0]} strengths for a batch of "
                                        f"{hidden.shape[0]} rows; give one per batch row.")
            shift = shift * (beta.like(hidden) if beta.vector.numel() > 1 else float(beta.vector))
        return _write(hidden, _affine_selected(hidden, offsets, positions, rows), hidden - shift)

    return fn


def _affine_rows(unit: _Cast, c: torch.Tensor, positions: Positions, rows: Rows) -> HookFn:
    """_affine_one with row r's own unit [rows, d] and reference c[r]."""
    values = _Cast(torch.as_tensor(c, dtype=torch.float32).reshape(-1, 1))

    def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        u = _rows_of(unit.like(hidden), hidden, "affine_ablate")  # [rows, 1, d]
        shift = (torch.bmm(hidden, u.transpose(1, 2)) - values.like(hidden)[:, :, None]) * u
        return _write(hidden, _affine_selected(hidden, offsets, positions, rows), hidden - shift)

    return fn
