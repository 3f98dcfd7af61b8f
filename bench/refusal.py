"""Refusal-study benchmark on the demo pair, measured in one run.

    python -m bench.refusal [--n-train N] [--n-val 4] [--n-test 8] [--layer-step 2] [--gen-prompts 8] [--new-tokens 8]
    python -m bench.refusal --floor     # the default run against its forward-pass floor (and nothing else)

1. the whole pipeline (candidate directions for both models, selection on the validation split, every
   model x direction source x intervention on the test split) with the given sizes, computed from scratch
   (the study's run() is uncached), with the time of each step;
2. greedy generation of the same prompts batched (one generate call) against one prompt at a time, printed as
   a ratio (the test step generates every reply in batches).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from analyses.common import PrintProgress
from analyses.refusal import ABLATIONS, Config, default_data, run
from analyses.refusal.compute import _formatted
from analyses.refusal.evaluate import shared_suffix
from analyses.refusal.scores import (_repeated, clean_prefix, generate_scored, generation_prefix, log_probs_of,
                                     post_instruction_positions, refusal_token_ids, suffix_final_hidden)
from analyses.refusal.selection import kept_layers
from steering import load_pair
from steering.generation import DecodingSettings, format_prompts
from steering.interventions import run_until
from steering.model_view import UNEMBED_ROWS, ModelView
from steering.refusal_data import refusal_study_split
from steering.resume import resume_at
from steering.tokens import encode


def bench_pipeline(pair, config: Config) -> None:
    start = time.perf_counter()
    result = run(pair, config, progress=PrintProgress())
    total = time.perf_counter() - start
    print(f"1. whole pipeline ({config}): {total:.1f} s")
    print(result.timings.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    cols = ["model", "transfer", "intervention", "prompts", "n", "refusal_score", "refusal_rate"]
    print(result.selected.to_string(index=False))
    print(result.scores[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def bench_generation(pair, n: int, new_tokens: int) -> None:
    tok = pair.tokenizer
    texts = format_prompts(tok, refusal_study_split("harmful.txt", "test")[:n])
    ids = refusal_token_ids(tok)
    start = time.perf_counter()
    batched, _ = generate_scored(pair.post, tok, texts, ids, max_new_tokens=new_tokens, batch_size=n)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = [generate_scored(pair.post, tok, [t], ids, max_new_tokens=new_tokens)[0][0] for t in texts]
    t_single = time.perf_counter() - start
    same = sum(a == b for a, b in zip(batched, single))
    print(f"2. generation, {n} prompts x {new_tokens} new tokens (post-trained model): batched {t_batched:.1f} s, "
          f"one at a time {t_single:.1f} s: {t_single / t_batched:.2f}x faster batched "
          f"({same}/{n} replies identical)")


def _batches(tok, texts: list[str], size: int, device):
    return [encode(tok, texts[i:i + size], device) for i in range(0, len(texts), size)]


def _cells(tok, fmt: dict, positions: tuple[int, ...], layer: int) -> int:
    """Candidates the run scores at a layer: at layer 0 a position where every train prompt of both sides has
    the same token (the template's) has no direction (the residual entering layer 0 is the token's embedding)."""
    if layer:
        return len(positions)
    ids = [tok(t, add_special_tokens=False).input_ids for side in ("harmful", "harmless") for t in fmt[side, "train"]]
    return sum(len({row[p] if -p <= len(row) else None for row in ids}) > 1 for p in positions)


@torch.no_grad()
def floor(pair, config: Config, data) -> float:
    """Seconds of the plain passes the refusal result needs for this config, in the run's batch shapes (prompt
    batches of config.batch_size, per side and split, as the run forms them), no intervention hook:
    1. directions: per model, the train prompts of both sides through layers 0..n_layers-2 (the deepest read is
       the stream entering the last layer; run_until stops there, no recording hook);
    2. selection, per model: one clean pass of the harmless val prompts (whole stack, last position unembedded);
       for the affine ablation, one clean pass of the val prompts (harmful then harmless) over every token before
       the last k = -min(positions), keeping its KV cache; then per scored layer l with its K candidates (the
       grid's cells that have a direction): the harmless val batch repeated K times from layer l on (resume_at's
       one replacement hook, no addition hook) and the val batch repeated K times over its last k tokens on the
       copied prefix cache, all layers (the ablation changes those tokens at every layer and nothing before them;
       "project" changes every token: K full passes of the val batch instead), the last position's final states
       of the layer unembedded together, UNEMBED_ROWS rows at a time;
    3. test: per model and prompt set, model.generate of each test batch repeated once per condition (none, then
       each model's direction: 3 blocks of rows), greedy, config.max_new_tokens, first-step logits kept; on the
       harmful prompts under the affine ablation (which changes the last k tokens and what follows only) the
       tokens before the last k run once per batch, clean, and the three blocks generate from that cache."""
    tok = pair.tokenizer
    fmt = _formatted(tok, data, config)
    positions = tuple(config.positions) or post_instruction_positions(tok)
    layers = kept_layers(pair.n_layers, config.prune_layer_fraction)[::max(1, config.layer_step)]
    k, size = -min(positions), config.batch_size
    kwargs = DecodingSettings(max_new_tokens=config.max_new_tokens).generate_kwargs()
    start = time.perf_counter()
    for model in pair.models().values():
        view = ModelView.of(model)
        for side in ("harmful", "harmless"):
            for batch in _batches(tok, fmt[side, "train"], size, view.device):
                run_until(model, f"resid_pre.{pair.n_layers - 1}", input_ids=batch.input_ids,
                          attention_mask=batch.attention_mask)
        harmless = _batches(tok, fmt["harmless", "val"], size, view.device)
        for batch in harmless:
            log_probs_of(model, view.decoder_stack(**batch, use_cache=False).last_hidden_state[:, -1])
        both = _batches(tok, fmt["harmful", "val"] + fmt["harmless", "val"], size, view.device)
        prefixes = [clean_prefix(model, b.input_ids, b.attention_mask, k) for b in both] \
            if config.ablation == "affine" else []
        for layer in layers:
            _floor_layer(model, layer, _cells(tok, fmt, positions, layer), harmless, both, prefixes, k)
        for side in ("harmful", "harmless"):
            for batch in _batches(tok, fmt[side, "test"], size, view.device):
                suffix = shared_suffix(side, positions, config)
                prefix = generation_prefix(model, batch.input_ids, batch.attention_mask, suffix) if suffix else None
                cached = {} if prefix is None else {"cache": _repeated(prefix, batch.input_ids.shape[0], 3)}
                model.generate(input_ids=batch.input_ids.repeat(3, 1), attention_mask=batch.attention_mask.repeat(
                    3, 1), **cached, **kwargs, return_dict_in_generate=True, output_logits=True)
    return time.perf_counter() - start


def _floor_layer(model, layer: int, cells: int, harmless, both, prefixes, k: int) -> None:
    """One scored layer's plain passes (floor's step 2), the last position's final states unembedded together,
    UNEMBED_ROWS at a time (as the run does)."""
    if not cells:
        return
    view, final = ModelView.of(model), []
    for batch in harmless:
        rows, seq = cells * batch.input_ids.shape[0], batch.input_ids.shape[1]
        stream = torch.zeros(rows, seq, view.d_model, dtype=view.embedding.weight.dtype, device=view.device)
        with resume_at(model, layer, stream):
            final.append(view.decoder_stack(input_ids=batch.input_ids.repeat(cells, 1),
                                            attention_mask=batch.attention_mask.repeat(cells, 1),
                                            use_cache=False).last_hidden_state[:, -1])
    if prefixes:
        for batch, cache in zip(both, prefixes):
            final.append(suffix_final_hidden(model, batch.input_ids, batch.attention_mask, cache, k, cells))
    else:
        for _ in range(cells):
            for batch in both:
                final.append(view.decoder_stack(**batch, use_cache=False).last_hidden_state[:, -1])
    log_probs_of(model, torch.cat(final), chunk=UNEMBED_ROWS)


def bench_floor(pair) -> None:
    """The default run and its floor, side by side (as bench.studies prints them)."""
    config = Config()
    data = default_data(pair, config)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    floor_seconds = floor(pair, config, data)
    start = time.perf_counter()
    result = run(pair, config, data=data)
    seconds = time.perf_counter() - start
    print(result.timings.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    print(f"STUDY refusal seconds={seconds:.1f} floor_seconds={floor_seconds:.1f} ratio={seconds / floor_seconds:.2f}"
          f" (load average {os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=None, help="train prompts per side (default: all)")
    parser.add_argument("--n-val", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--layer-step", type=int, default=1)
    parser.add_argument("--ablation", choices=ABLATIONS, default="affine")
    parser.add_argument("--gen-prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--floor", action="store_true", help="only the default run against its floor")
    args = parser.parse_args()
    pair = load_pair("demo")
    if args.floor:
        return bench_floor(pair)
    bench_generation(pair, args.gen_prompts, args.new_tokens)
    if not args.skip_pipeline:
        bench_pipeline(pair, Config(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                                    layer_step=args.layer_step, ablation=args.ablation))


if __name__ == "__main__":
    main()
