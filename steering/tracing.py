"""Batched activation patching (causal tracing, Meng et al. 2022): put clean hidden states into a corrupted run,
many restorations in one forward pass.

One prompt is traced at a time, as a single unpadded sequence, so token positions are plain indices and every
batch row holds the same corrupted input (one noise sample per group of rows). Batch row r restores one cell
(token t_r, layer l_r): a hook per hook point writes the cached clean value into the rows and positions that
restore it. The clean run is computed once and cached in a dict {hook point: [seq, d_model]}; it may come from
another model of the same shape (cross-model patching).

    inp = noise_corruption(model, ids, subject_positions, std=0.1, n_samples=3, seed=0)
    states = clean_states(model, inp, "resid", range(view.n_layers))
    grid = trace_grid(model, inp, states, cells, "resid", readout)      # [n_samples, n_cells], the reference
    grid, = trace_grids(model, inp, [Grid(cells, "resid", states)], readout)  # the same, resumed (fast)

Components: "resid" restores the residual stream entering layer l ("resid_pre.l"); "mlp" and "attn" restore that
sublayer's output at layers l - window//2 .. l + window - window//2 - 1 (ROME's window, clipped at the edges).
Cells whose token precedes the first corrupted position restore a state that equals the corrupted one (when the
states are the same model's), so they are not computed: their score is the corrupted score, exactly.

The fast engine (`trace_grids`) uses that a restoration at layer l (the window's first layer for mlp/attn) leaves
layers before l as the corrupted run's: the corrupted run's residual stream is stored once, rows are sorted by
start layer, and every batch resumes at its rows' smallest (steering.resume), several grids (components,
cross-model states) sharing the passes. `trace_grid` and `trace_cell_loop` stay as the references it is tested against.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import InvalidInputError
from .interventions import hooks, patch, record, run_until
from .model_view import ModelView
from .resume import resume_at

POINTS = {"resid": "resid_pre", "mlp": "mlp_out", "attn": "attn_out"}  # component -> hook point kind
Cell = tuple[int, int]  # (token position, layer)


@dataclass(frozen=True)
class Readout:
    """What a run is scored by: sum_i weights[i] * P(token_ids[i]) at the next token after the prompt.
    P(object) is Readout((obj,), (1.0,)); P(TRUE) - P(FALSE) is Readout((t, f), (1.0, -1.0))."""

    token_ids: tuple[int, ...]
    weights: tuple[float, ...]

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        weights = torch.tensor(self.weights, dtype=probs.dtype, device=probs.device)
        return probs[:, list(self.token_ids)] @ weights


@dataclass
class TraceInput:
    """A clean prompt and its corruption(s), as embeddings (the embedding module's output, scaling included)."""

    clean: torch.Tensor  # [seq, d_model]
    corrupted: torch.Tensor  # [n_samples, seq, d_model]
    first_corrupted: int  # first position where the corrupted input differs from the clean one

    @property
    def n_tokens(self) -> int:
        return self.clean.shape[0]


@torch.no_grad()
def embed(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """[seq] token ids -> [seq, d_model] input embeddings."""
    view = ModelView.of(model)
    return view.embedding(ids.to(view.device)[None])[0]


def noise_corruption(model: nn.Module, ids: torch.Tensor, positions: Sequence[int], std: float,
                     n_samples: int = 1, seed: int = 0) -> TraceInput:
    """Gaussian noise (std `std`) on the embeddings at `positions`; the same seed gives the same noise on every
    model of the same width, so two models can be corrupted alike."""
    if not positions or n_samples < 1:
        raise InvalidInputError("Noise needs at least one position to corrupt and at least one sample.")
    clean = embed(model, ids)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_samples, len(positions), clean.shape[-1], generator=generator) * std
    corrupted = clean[None].repeat(n_samples, 1, 1)
    corrupted[:, list(positions)] += noise.to(clean.dtype).to(clean.device)
    return TraceInput(clean, corrupted, min(positions))


def paired_corruption(model: nn.Module, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor) -> TraceInput:
    """The corrupted input is another prompt of the same token length (e.g. the false statement)."""
    if clean_ids.shape != corrupted_ids.shape:
        raise InvalidInputError(f"Paired prompts must have the same token length ({len(clean_ids)} vs "
                                f"{len(corrupted_ids)}).")
    differ = (clean_ids != corrupted_ids).nonzero()
    first = int(differ[0]) if len(differ) else len(clean_ids)
    return TraceInput(embed(model, clean_ids), embed(model, corrupted_ids)[None], first)


@torch.no_grad()
def run_embeds(model: nn.Module, embeds: torch.Tensor, readout: Readout, fns: Sequence = ()) -> torch.Tensor:
    """[batch, seq, d] embeddings -> [batch] readout; only the last position is unembedded."""
    view = ModelView.of(model)
    with hooks(model, fns):
        hidden = view.decoder_stack(inputs_embeds=embeds.to(view.device), use_cache=False).last_hidden_state
    return readout(torch.softmax(view.logits(hidden[:, -1]).float(), dim=-1)).cpu()


@torch.no_grad()
def clean_states(model: nn.Module, inp: TraceInput, component: str, layers: Sequence[int]) -> dict[str, torch.Tensor]:
    """{hook point: [seq, d_model]} of the clean run at every given layer (stops after the last one)."""
    view = ModelView.of(model)
    points = [f"{_kind(component)}.{view.check_layer(layer)}" for layer in layers]
    with record(model, points, positions="all") as rec:  # stops once the last layer is done
        run_until(model, f"resid_post.{max(layers)}", inputs_embeds=inp.clean[None].to(view.device))
    return {name: rec.get(name)[0] for name in points}


def _kind(component: str) -> str:
    if component not in POINTS:
        raise InvalidInputError(f"Unknown component '{component}': use one of {', '.join(POINTS)}.")
    return POINTS[component]


def window_layers(layer: int, n_layers: int, component: str, window: int = 10) -> list[int]:
    """The layers a cell restores: itself for the residual stream, ROME's clipped window for mlp/attn."""
    if component == "resid" or window <= 1:
        return [layer]
    lo = max(0, layer - window // 2)
    return list(range(lo, min(n_layers, layer - window // 2 + window)))


def cell_points(cell: Cell, n_layers: int, component: str, window: int) -> list[str]:
    return [f"{_kind(component)}.{k}" for k in window_layers(cell[1], n_layers, component, window)]


def restorer(state: torch.Tensor, rows: list[int], positions: list[int]) -> Callable:
    """A hook function writing state[positions[i]] into hidden[rows[i], positions[i]] for every i."""
    rows_t, pos_t = torch.tensor(rows), torch.tensor(positions)

    def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        hidden = hidden.clone()
        dev = hidden.device
        hidden[rows_t.to(dev), pos_t.to(dev)] = state.to(device=dev, dtype=hidden.dtype)[pos_t.to(dev)]
        return hidden

    return fn


def _batch_hooks(cells: Sequence[Cell], states: dict[str, torch.Tensor], n_layers: int, component: str,
                 window: int) -> list[tuple[str, Callable]]:
    """One hook per hook point, restoring the clean state at each row's token for the rows that need it."""
    where: dict[str, tuple[list[int], list[int]]] = {}
    for row, cell in enumerate(cells):
        for point in cell_points(cell, n_layers, component, window):
            rows, positions = where.setdefault(point, ([], []))
            rows.append(row)
            positions.append(cell[0])
    missing = [p for p in where if p not in states]
    if missing:
        raise InvalidInputError(f"No clean states cached for {', '.join(missing[:3])}.")
    return [(point, restorer(states[point], rows, pos)) for point, (rows, pos) in where.items()]


@torch.no_grad()
def trace_grid(model: nn.Module, inp: TraceInput, states: dict[str, torch.Tensor], cells: Sequence[Cell],
               component: str, readout: Readout, *, window: int = 10, batch_size: int = 64,
               corrupted_scores: torch.Tensor | None = None, same_model: bool = True,
               progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """[n_samples, n_cells] readout of the corrupted run with each cell restored from `states`, batched:
    rows are (sample, cell) pairs, `batch_size` of them per forward pass. With `same_model` (the states are this
    model's own clean run) cells before the first corrupted token are the corrupted score without computing; pass
    False for states from another model."""
    n_layers, n_samples = ModelView.of(model).n_layers, inp.corrupted.shape[0]
    if corrupted_scores is None:
        corrupted_scores = run_embeds(model, inp.corrupted, readout)
    out = corrupted_scores[:, None].repeat(1, len(cells))
    todo = [(s, c) for s in range(n_samples) for c, cell in enumerate(cells)
            if not same_model or cell[0] >= inp.first_corrupted]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        chunk_cells = [cells[c] for _, c in chunk]
        embeds = inp.corrupted[torch.tensor([s for s, _ in chunk])]
        fns = _batch_hooks(chunk_cells, states, n_layers, component, window)
        scores = run_embeds(model, embeds, readout, fns)
        for (s, c), score in zip(chunk, scores):
            out[s, c] = score
        if progress:
            progress(start + len(chunk), len(todo))
    return out


@torch.no_grad()
def trace_cell_loop(model: nn.Module, inp: TraceInput, states: dict[str, torch.Tensor], cells: Sequence[Cell],
                    component: str, readout: Readout, *, window: int = 10) -> torch.Tensor:
    """The reference: one forward pass per (sample, cell), restoring with `interventions.patch`. Slow; for tests
    and the benchmark."""
    view = ModelView.of(model)
    seq = inp.n_tokens
    out = torch.empty(inp.corrupted.shape[0], len(cells))
    for s in range(inp.corrupted.shape[0]):
        for c, (token, layer) in enumerate(cells):
            points = cell_points((token, layer), view.n_layers, component, window)
            values = {p: states[p][token][None, None] for p in points}
            with patch(model, values, positions=[token - seq], prompt_length=seq):
                out[s, c] = run_embeds(model, inp.corrupted[s][None], readout)[0]
    return out


def full_grid(tokens: Sequence[int], n_layers: int) -> list[Cell]:
    """Every (token, layer) cell, token-major."""
    return [(t, layer) for t in tokens for layer in range(n_layers)]


@dataclass
class Grid:
    """One grid for `trace_grids`: its cells and component, the clean states it restores, and whether they are
    this model's own (then cells before the first corrupted token are the corrupted score, not computed)."""

    cells: Sequence[Cell]
    component: str
    states: dict[str, torch.Tensor]
    same_model: bool = True


Row = tuple[int, int, int, int]  # (start layer, grid, sample, cell): one batch row of trace_grids


@torch.no_grad()
def clean_states_of(model: nn.Module, inp: TraceInput, components: Sequence[str]) -> dict[str, torch.Tensor]:
    """clean_states for several components at every layer, from one clean pass."""
    view = ModelView.of(model)
    points = [f"{_kind(c)}.{layer}" for c in dict.fromkeys(components) for layer in range(view.n_layers)]
    with record(model, points, positions="all") as rec:
        run_until(model, f"resid_post.{view.n_layers - 1}", inputs_embeds=inp.clean[None].to(view.device))
    return {name: rec.get(name)[0] for name in points}


@torch.no_grad()
def corrupted_stream(model: nn.Module, inp: TraceInput) -> torch.Tensor:
    """[n_layers, n_samples, seq, d_model]: the residual stream entering each layer of the corrupted run(s)."""
    view = ModelView.of(model)
    points = [f"resid_pre.{layer}" for layer in range(view.n_layers)]
    with record(model, points, positions="all") as rec:
        run_until(model, points[-1], inputs_embeds=inp.corrupted.to(view.device))
    return torch.stack([rec.get(p) for p in points])


def plan_rows(grids: Sequence[Grid], n_layers: int, n_samples: int, first_corrupted: int, window: int,
              batch_size: int) -> list[list[Row]]:
    """The batches of trace_grids: the rows to compute sorted by start layer (the first layer a row restores),
    batch_size a batch; a batch resumes at its first row's start (full batches: on a CPU a pass's cost has a large
    part that does not shrink with its rows, so many small per-layer batches cost more than the layers saved)."""
    rows: list[Row] = []
    for g, grid in enumerate(grids):
        for s in range(n_samples):
            for c, (token, layer) in enumerate(grid.cells):
                if grid.same_model and token < first_corrupted:
                    continue
                rows.append((window_layers(layer, n_layers, grid.component, window)[0], g, s, c))
    rows.sort(key=lambda row: row[0])
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]


def _resumed_batch(model: nn.Module, inp: TraceInput, stream: torch.Tensor, grids: Sequence[Grid],
                   batch: list[Row], readout: Readout, window: int) -> torch.Tensor:
    """One batch resumed at its first (smallest) start layer: the corrupted stream there, restored states written
    into it (that layer's resid_pre) or by hooks (later points), read out at the last position."""
    n_layers, start = stream.shape[0], batch[0][0]
    samples = torch.tensor([s for _, _, s, _ in batch])
    resid = stream[start][samples].clone()
    where: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for row, (_, g, _, c) in enumerate(batch):
        token, layer = grids[g].cells[c]
        for point in cell_points((token, layer), n_layers, grids[g].component, window):
            if point == f"resid_pre.{start}":
                resid[row, token] = grids[g].states[point][token].to(resid.dtype)
            else:
                rows, positions = where.setdefault((point, g), ([], []))
                rows.append(row)
                positions.append(token)
    missing = [p for p, g in where if p not in grids[g].states]
    if missing:
        raise InvalidInputError(f"No clean states cached for {', '.join(missing[:3])}.")
    fns = [(p, restorer(grids[g].states[p], rows, pos)) for (p, g), (rows, pos) in where.items()]
    with resume_at(model, start, resid):
        return run_embeds(model, inp.corrupted[samples], readout, fns)


@torch.no_grad()
def trace_grids(model: nn.Module, inp: TraceInput, grids: Sequence[Grid], readout: Readout, *, window: int = 10,
                batch_size: int = 64, corrupted_scores: torch.Tensor | None = None,
                stream: torch.Tensor | None = None,
                progress: Callable[[int, int], None] | None = None) -> list[torch.Tensor]:
    """trace_grid for several grids on one model and corrupted input, resumed: [n_samples, n_cells] per grid.
    Rows of every grid are grouped by start layer and each batch runs only the layers from there on, from the
    corrupted run's stored residual stream (`stream`, corrupted_stream's, computed here if not given)."""
    n_layers, n_samples = ModelView.of(model).n_layers, inp.corrupted.shape[0]
    if corrupted_scores is None:
        corrupted_scores = run_embeds(model, inp.corrupted, readout)
    stream = corrupted_stream(model, inp) if stream is None else stream
    outs = [corrupted_scores[:, None].repeat(1, len(g.cells)) for g in grids]
    batches = plan_rows(grids, n_layers, n_samples, inp.first_corrupted, window, batch_size)
    total, done = sum(len(b) for b in batches), 0
    for batch in batches:
        scores = _resumed_batch(model, inp, stream, grids, batch, readout, window)
        for (_, g, s, c), score in zip(batch, scores):
            outs[g][s, c] = score
        done += len(batch)
        if progress:
            progress(done, total)
    return outs
