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
Cells whose token precedes the first corrupted position, and residual cells at layer 0 whose token's input is not
corrupted, restore a state that equals the corrupted one (when the states are the same model's), so the fast
engine does not compute them: their score is the corrupted score, exactly.

The fast engine (`trace_grids`) uses that a restoration at token t and layer l (the window's first layer for
mlp/attn) leaves layers before l, and tokens before t at every layer, as the corrupted run had them: the corrupted
run's residual stream and KV cache are stored once (`corrupted_run`), rows are grouped by start layer and token
(`plan_rows`), and every batch runs only the layers from its rows' smallest start (steering.resume) and the tokens
from their smallest token, over the cache of the tokens before it; several grids (components, cross-model states)
share the passes. `trace_grid` and `trace_cell_loop` stay as the references it is tested against.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from .errors import InvalidInputError
from .interventions import hooks, patch, record, run_until
from .model_view import UNEMBED_ROWS, ModelView
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

    def uncorrupted(self) -> frozenset[int]:
        """Positions whose input is the clean one in every corrupted sample."""
        same = (self.corrupted == self.clean[None]).all(dim=-1).all(dim=0)
        return frozenset(same.nonzero().flatten().tolist())


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


def restorer(state: torch.Tensor, rows: list[int], positions: list[int], first: int = 0) -> Callable:
    """A hook function writing state[positions[i]] into hidden[rows[i], positions[i]] for every i; `first`: the
    pass starts at that token (over a cache of the ones before it), so hidden's column j is token first + j."""
    rows_t, pos_t = torch.tensor(rows), torch.tensor(positions)

    def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        hidden = hidden.clone()
        dev = hidden.device
        hidden[rows_t.to(dev), (pos_t - first).to(dev)] = state.to(device=dev, dtype=hidden.dtype)[pos_t.to(dev)]
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


Row = tuple[int, int, int, int, int]  # (start layer, token, grid, sample, cell): one batch row of trace_grids


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


@dataclass
class CorruptedRun:
    """The corrupted run(s) as the patched runs resume from them: the residual stream entering each layer
    [n_layers, n_samples, seq, d_model] and every layer's keys and values [n_samples, kv_heads, seq, head_dim]
    (a restoration at token t leaves every earlier token as the corrupted run had it, at every layer)."""

    stream: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def cache(self, model: nn.Module, samples: torch.Tensor, length: int):
        """A fresh KV cache of the first `length` tokens of these samples' runs (one per batch row)."""
        cache = DynamicCache(config=_text_config(model))
        for layer, (k, v) in enumerate(zip(self.keys, self.values)):
            index = samples.to(k.device)
            cache.update(k[index, :, :length], v[index, :, :length], layer)
        return cache


def _text_config(model: nn.Module):
    config = ModelView.of(model).model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


@torch.no_grad()
def corrupted_run(model: nn.Module, inp: TraceInput) -> CorruptedRun:
    """One full pass of the corrupted input(s), keeping every layer's input and its keys and values at every token
    (a cache without the model's config keeps them all, also in sliding-window layers, whose own cache keeps only
    the window)."""
    view = ModelView.of(model)
    points = [f"resid_pre.{layer}" for layer in range(view.n_layers)]
    with record(model, points, positions="all") as rec:
        cache = DynamicCache()
        view.decoder_stack(inputs_embeds=inp.corrupted.to(view.device), cache=cache, use_cache=True)
    layers = [cache.layers[i] for i in range(view.n_layers)]
    return CorruptedRun(torch.stack([rec.get(p) for p in points]), [lay.keys for lay in layers],
                        [lay.values for lay in layers])


def _rows(grids: Sequence[Grid], n_layers: int, n_samples: int, first_corrupted: int, window: int,
          uncorrupted: frozenset[int]) -> list[Row]:
    """The rows to compute. Left out, where the states are the model's own (their score is the corrupted one,
    exactly): cells before the first corrupted token, and residual cells at layer 0 whose token's input is not
    corrupted (the stream entering layer 0 at a token depends on that token's input alone)."""
    rows: list[Row] = []
    for g, grid in enumerate(grids):
        for s in range(n_samples):
            for c, (token, layer) in enumerate(grid.cells):
                if grid.same_model and (token < first_corrupted or grid.component == "resid" and layer == 0
                                        and token in uncorrupted):
                    continue
                rows.append((window_layers(layer, n_layers, grid.component, window)[0], token, g, s, c))
    return rows


def plan_cost(batches: Sequence[Sequence[Row]], n_layers: int, n_tokens: int) -> int:
    """Token-layers the batches run: rows x layers from the batch's smallest start x tokens from its smallest."""
    return sum(len(b) * (n_layers - min(r[0] for r in b)) * (n_tokens - min(r[1] for r in b)) for b in batches)


def plan_rows(grids: Sequence[Grid], n_layers: int, n_samples: int, first_corrupted: int, window: int,
              batch_size: int, n_tokens: int | None = None,
              uncorrupted: frozenset[int] = frozenset()) -> list[list[Row]]:
    """The batches of trace_grids, batch_size rows at most. A batch runs the layers from its rows' smallest start
    layer and the tokens from its rows' smallest token, so rows that start alike share batches, greedily: the
    costliest remaining (start layer, token) corner opens a batch, which takes the rows it covers (start and token
    at or after its own), the costliest first, until it is full. plan_cost counts what a plan runs."""
    rows = _rows(grids, n_layers, n_samples, first_corrupted, window, uncorrupted)
    n_tokens = n_tokens or 1 + max((r[1] for r in rows), default=0)
    by_corner: dict[tuple[int, int], list[Row]] = {}
    for row in sorted(rows):
        by_corner.setdefault(row[:2], []).append(row)

    def cost(corner: tuple[int, int]) -> tuple[int, int, int]:
        return (n_layers - corner[0]) * (n_tokens - corner[1]), -corner[0], -corner[1]

    batches = []
    while by_corner:
        opener = max(by_corner, key=cost)
        covered = sorted((c for c in by_corner if c[0] >= opener[0] and c[1] >= opener[1]), key=cost, reverse=True)
        batch: list[Row] = []
        for corner in covered:
            take = by_corner[corner][:batch_size - len(batch)]
            batch += take
            by_corner[corner] = by_corner[corner][len(take):]
            if not by_corner[corner]:
                del by_corner[corner]
            if len(batch) == batch_size:
                break
        batches.append(batch)
    return batches


def _resumed_batch(model: nn.Module, inp: TraceInput, run: CorruptedRun, grids: Sequence[Grid],
                   batch: list[Row], window: int) -> torch.Tensor:
    """One batch resumed at its smallest start layer and smallest token: the corrupted stream there for the tokens
    from that one on, restored states written into it (that layer's resid_pre) or by hooks (later points), over
    the corrupted run's KV cache of the earlier tokens. Returns the final states at the last position [b, d]."""
    n_layers = run.stream.shape[0]
    start, first = min(r[0] for r in batch), min(r[1] for r in batch)
    samples = torch.tensor([r[3] for r in batch])
    resid = run.stream[start][samples][:, first:].clone()
    where: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for row, (_, _, g, _, c) in enumerate(batch):
        token, layer = grids[g].cells[c]
        for point in cell_points((token, layer), n_layers, grids[g].component, window):
            if point == f"resid_pre.{start}":
                resid[row, token - first] = grids[g].states[point][token].to(resid.dtype)
            else:
                rows, positions = where.setdefault((point, g), ([], []))
                rows.append(row)
                positions.append(token)
    missing = [p for p, g in where if p not in grids[g].states]
    if missing:
        raise InvalidInputError(f"No clean states cached for {', '.join(missing[:3])}.")
    fns = [(p, restorer(grids[g].states[p], rows, pos, first)) for (p, g), (rows, pos) in where.items()]
    return resumed_pass(model, inp, run, samples, start, first, resid, fns)


def resumed_pass(model: nn.Module, inp: TraceInput, run: CorruptedRun, samples: torch.Tensor, start: int,
                 first: int, resid: torch.Tensor | None = None, fns: Sequence = ()) -> torch.Tensor:
    """[b, d] final states at the last position of the corrupted samples' runs resumed at layer `start` and token
    `first`, over the cache of the tokens before it: from `resid` ([b, seq - first, d], the stream entering
    `start`; the corrupted one if None), with hook functions `fns` (positions counted from `first`)."""
    view = ModelView.of(model)
    resid = run.stream[start][samples][:, first:] if resid is None else resid
    embeds = inp.corrupted[samples][:, first:].to(view.device)
    cached = {"cache": run.cache(model, samples, first), "use_cache": True} if first else {"use_cache": False}
    with resume_at(model, start, resid), hooks(model, fns, prompt_length=inp.n_tokens):
        return view.decoder_stack(inputs_embeds=embeds, **cached).last_hidden_state[:, -1]


def read_out(model: nn.Module, final_hidden: torch.Tensor, readout: Readout, rows: int = UNEMBED_ROWS) -> torch.Tensor:
    """[n] readout of final states [n, d_model] (the decoder stack's output, final norm applied), `rows` at a
    time."""
    view = ModelView.of(model)
    return torch.cat([readout(torch.softmax(view.logits(final_hidden[i:i + rows]).float(), dim=-1)).cpu()
                      for i in range(0, final_hidden.shape[0], rows)])


@torch.no_grad()
def trace_grids(model: nn.Module, inp: TraceInput, grids: Sequence[Grid], readout: Readout, *, window: int = 10,
                batch_size: int = 64, corrupted_scores: torch.Tensor | None = None,
                run: CorruptedRun | None = None,
                progress: Callable[[int, int], None] | None = None) -> list[torch.Tensor]:
    """trace_grid for several grids on one model and corrupted input, resumed: [n_samples, n_cells] per grid.
    Rows of every grid are grouped by start layer and token (plan_rows), and each batch runs only the layers and
    tokens from its rows' smallest on, from the corrupted run's stored stream and KV cache (`run`,
    corrupted_run's, computed here if not given); final states are unembedded UNEMBED_ROWS at a time."""
    n_layers, n_samples = ModelView.of(model).n_layers, inp.corrupted.shape[0]
    if corrupted_scores is None:
        corrupted_scores = run_embeds(model, inp.corrupted, readout)
    run = corrupted_run(model, inp) if run is None else run
    outs = [corrupted_scores[:, None].repeat(1, len(g.cells)) for g in grids]
    batches = plan_rows(grids, n_layers, n_samples, inp.first_corrupted, window, batch_size, inp.n_tokens,
                        inp.uncorrupted())
    total, done, pending = sum(len(b) for b in batches), 0, []
    for i, batch in enumerate(batches):
        pending.append((batch, _resumed_batch(model, inp, run, grids, batch, window)))
        if sum(len(b) for b, _ in pending) < UNEMBED_ROWS and i + 1 < len(batches):
            continue
        scores = read_out(model, torch.cat([hidden for _, hidden in pending]), readout)
        rows = [row for b, _ in pending for row in b]
        for (_, _, g, s, c), score in zip(rows, scores):
            outs[g][s, c] = score
        done, pending = done + len(rows), []
        if progress:
            progress(done, total)
    return outs
