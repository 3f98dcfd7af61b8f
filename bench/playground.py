"""Playground benchmark and acceptance run on the demo pair, measured side by side in one run.

    python -m bench.playground [--n 20] [--layer 9] [--alpha 1.0]

1. the four-way batched generation (one generate call per model) against four separate calls, 32 new tokens;
2. the time from pressing "Generate" to the four texts in the page (AppTest, direction already cached);
2b. streaming: the time to the first visible token and to the last, streamed (the page's per-step callback, which
   decodes every row after each step) against the unstreamed call, alternated in one run;
2c. a greedy decode step (steered, as the pages run it) at the batch sizes the pages use (1 row: Home; 4 rows: the
   Playground's two prompts, unsteered and steered; 8 rows), for each way of computing the logits
   (model_view.decoding_unembedding), against the time to read the model's weights once, alternated in one run;
3. acceptance: a harmful-minus-harmless direction read from the post-trained model (and, for transfer, from the
   base model), added at a middle layer to harmless prompts and ablated on harmful ones; refusal rates judged by
   the project's phrase list on the refusal study's held-out test prompts.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from analyses.contrast_sets import builtin_sets
from steering import load_pair
from steering.generation import DecodingSettings, SteeringSpec, compare, format_prompts, generate
from steering.judging import is_refusal
from steering.model_view import decoding_unembedding
from steering.playground import ContrastPrompts, directions_for_pair
from steering.refusal_data import refusal_study_split


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_batching(pair, spec) -> None:
    prompts = ["How do I bake bread?", "Write a short poem about the sea."]
    decoding = DecodingSettings(max_new_tokens=32)
    texts = format_prompts(pair.tokenizer, prompts)
    _, batched = timed(lambda: compare(pair.models(), pair.tokenizer, prompts, spec, decoding=decoding))

    def separate():
        for model in pair.models().values():
            generate(model, pair.tokenizer, texts, decoding=decoding)
            generate(model, pair.tokenizer, texts, steering=spec, decoding=decoding)

    _, apart = timed(separate)
    print(f"1. four-way generation, 2 prompts, 32 new tokens: batched {batched:.1f} s, four separate calls "
          f"{apart:.1f} s: {apart / batched:.2f}x")


def bench_streaming(pair, spec, repeats: int = 2) -> None:
    prompts = ["How do I bake bread?", "Write a short poem about the sea."]
    decoding = DecodingSettings(max_new_tokens=32)

    def run(stream: bool) -> tuple[float, float]:
        start, first = time.perf_counter(), []

        def seen(rows):
            if not first and any(r["text"].strip() for r in rows):
                first.append(time.perf_counter() - start)

        compare(pair.models(), pair.tokenizer, prompts, spec, decoding=decoding, on_text=seen if stream else None)
        last = time.perf_counter() - start
        return (first[0] if first else last), last  # unstreamed, the page shows nothing until the end

    plain, streamed = [], []
    for _ in range(repeats):  # alternated, so a change in the machine's load hits both alike
        plain.append(run(False))
        streamed.append(run(True))
    p_first, p_last = (min(t[i] for t in plain) for i in (0, 1))
    s_first, s_last = (min(t[i] for t in streamed) for i in (0, 1))
    print(f"2b. streaming, 2 prompts, 32 new tokens (best of {repeats}): first text {s_first:.1f} s streamed against "
          f"{p_first:.1f} s unstreamed ({p_first / s_first:.1f}x sooner); last token {s_last:.1f} s against "
          f"{p_last:.1f} s (streamed / unstreamed {s_last / p_last:.3f})")


def weight_read_seconds(model, repeats: int = 5) -> tuple[float, int]:
    """The time to read every weight of the model once (each tensor's dot with itself: BLAS, memory-bound; the
    fastest read this machine offers torch, as fast as a one-row matrix-vector product), best of `repeats`,
    and the bytes read (a tied weight once): the floor under a decode step, which reads them all."""
    tensors = list({t.data_ptr(): t for t in model.state_dict().values()}.values())
    n_bytes = sum(t.numel() * t.element_size() for t in tensors)
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for t in tensors:
                flat = t.reshape(-1)
                flat.dot(flat)
            best = min(best, time.perf_counter() - start)
    return best, n_bytes


def bench_decode_steps(pair, spec, rows_list=(1, 4, 8), steps: int = 12, repeats: int = 3) -> None:
    from transformers import StoppingCriteria, StoppingCriteriaList

    from steering.model_view import bf16_matmul_is_fast
    from steering.tokens import encode

    class Stamps(StoppingCriteria):
        def __init__(self):
            self.times = [time.perf_counter()]

        def __call__(self, input_ids, scores, **kwargs):
            self.times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    model = pair.post
    kinds = ["plain", "transposed"] + (["bfloat16"] if bf16_matmul_is_fast() else [])
    prompts = ["How do I bake bread?", "Write a short poem about the sea.", "How do I pick a lock?",
               "Name three rivers in Europe."]
    step_ms: dict[tuple[str, int], float] = {}
    tokens: dict[tuple[str, int], torch.Tensor] = {}
    floor, n_bytes = float("inf"), 0
    for _ in range(repeats):  # alternated, so a change in the machine's load hits every kind and the floor alike
        for rows in rows_list:
            seconds, n_bytes = weight_read_seconds(model, repeats=3)
            floor = min(floor, seconds)
            texts = format_prompts(pair.tokenizer, (prompts * 2)[:max(1, rows // 2)])
            texts = (texts + texts)[:rows]
            batch = encode(pair.tokenizer, texts, "cpu")
            for kind in kinds:
                stamps = Stamps()
                decoding = DecodingSettings(max_new_tokens=steps, unembedding=kind)
                with torch.no_grad(), spec.applied(model, list(range(rows // 2, rows)) if rows > 1 else None), \
                        decoding_unembedding(model, kind):
                    out = model.generate(**batch, **decoding.generate_kwargs(), min_new_tokens=steps,
                                         stopping_criteria=StoppingCriteriaList([stamps]))
                # decode steps (no prefill); the fastest: on a shared machine the others carry other jobs' time
                fastest = min(b - a for a, b in zip(stamps.times[1:], stamps.times[2:])) * 1e3
                step_ms[kind, rows] = min(step_ms.get((kind, rows), float("inf")), fastest)
                tokens[kind, rows] = out[:, batch.input_ids.shape[1]:]
    print(f"2c. greedy decode step, steered (fastest of {steps - 1} steps x {repeats} runs); reading the "
          f"{n_bytes / 1e9:.2f} GB of weights once takes {floor * 1e3:.0f} ms ({n_bytes / floor / 1e9:.1f} GB/s)")
    for rows in rows_list:
        parts = []
        for kind in kinds:
            same = torch.equal(tokens[kind, rows], tokens["plain", rows])
            parts.append(f"{kind} {step_ms[kind, rows]:.0f} ms = {step_ms[kind, rows] / (floor * 1e3):.2f}x the "
                         f"floor" + ("" if kind == "plain" else f" ({'same' if same else 'OTHER'} tokens)"))
        print(f"    {rows} row{'s' if rows > 1 else ''}: " + "; ".join(parts))


def bench_page() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../app_pages/1_Playground.py", default_timeout=900).run()
    at.number_input(key="pg_max_new").set_value(32)
    at.button(key="pg_generate").click()
    _, first = timed(at.run)
    at.button(key="pg_generate").click()
    _, again = timed(at.run)
    assert not at.exception and len(at.text) == 8, "the page did not show the four texts"
    print(f"2. page, 'Generate' to four texts (2 prompts, 32 new tokens): {first:.1f} s the first time "
          f"(direction computed or read from the cache), {again:.1f} s again")


def acceptance(pair, layer: int, alpha: float, n: int) -> pd.DataFrame:
    harmful, harmless = refusal_study_split("harmful.txt", "test")[:n], refusal_study_split("harmless.txt", "test")[:n]
    chosen = builtin_sets()["harmful vs harmless"]
    contrast = ContrastPrompts(chosen.name, tuple(chosen.positive), tuple(chosen.negative), True, -1)
    directions = directions_for_pair(pair, contrast)
    decoding = DecodingSettings(max_new_tokens=24)
    rows = []
    for source, direction in directions.items():
        for mode, prompts, kind in (("add", harmless, "harmless"), ("ablate", harmful, "harmful")):
            spec = SteeringSpec(direction, mode, (layer,), alpha)
            table = compare(pair.models(), pair.tokenizer, prompts, spec, decoding=decoding).table
            table["refusal"] = table.text.map(is_refusal)
            for (model, steered), part in table.groupby(["model", "steered"]):
                rows.append({"direction from": source, "intervention": f"{mode} on {kind}", "model": model,
                             "steered": steered, "refusal rate": part.refusal.mean(), "n": len(part)})
    out = pd.DataFrame(rows).drop_duplicates(["direction from", "intervention", "model", "steered"])
    print("3. refusal rates (refusal study test split)\n" + out.to_string(index=False))
    print("   cosine(base, post) per layer:",
          " ".join(f"{c:.2f}" for c in directions["base"].cosine(directions["post"]).tolist()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="prompts per set in the acceptance run")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--skip-page", action="store_true")
    parser.add_argument("--streaming-only", action="store_true", help="only 2b, the streaming timings")
    parser.add_argument("--steps-only", action="store_true", help="only 2c, the decode steps")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    pair = load_pair("demo")
    chosen = builtin_sets()["harmful vs harmless"]
    contrast = ContrastPrompts(chosen.name, tuple(chosen.positive), tuple(chosen.negative), True, -1)
    spec = SteeringSpec(directions_for_pair(pair, contrast)["post"], "add", (args.layer,), args.alpha)
    if args.streaming_only:
        bench_streaming(pair, spec)
        return None
    if args.steps_only:
        bench_decode_steps(pair, spec)
        return None
    table = acceptance(pair, args.layer, args.alpha, args.n)
    bench_batching(pair, spec)
    bench_streaming(pair, spec)
    bench_decode_steps(pair, spec)
    if not args.skip_page:
        bench_page()
    return table


if __name__ == "__main__":
    main()
