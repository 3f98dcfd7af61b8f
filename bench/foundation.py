"""Foundation benchmark on the demo base, everything measured side by side in one run; prints ratios.

    make bench        (installs nnsight, a benchmark-only dependency, then runs this)
    python -m bench.foundation [--skip-cold] [--skip-nnsight]

1. generation with and without a steering hook (batch 1 and 8, 64 new tokens); target: hook costs <= 3%
2. residual-stream extraction at the last token, all layers, 128 statements, batch 16: ours vs the decoder stack
   alone (the limit), a plain forward pass, and nnsight's trace with .save(); target: within 1.1x of the limit
3. pair load time, cold (from the GGUF, into an empty cache) and warm (from the cache); target: warm < 10 s
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

from steering import collect_residuals, load_pair
from steering.generation import DecodingSettings, SteeringSpec
from steering.directions import Direction, DirectionInfo
from steering.registry import ASSETS
from steering.tokens import encode


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def statements(n: int = 128) -> list[str]:
    with (ASSETS / "facts" / "cities.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    return [f"The city of {r['city']} is in {r['country']}." for r in rows]


def bench_generation(pair) -> None:
    model, tok = pair.base, pair.tokenizer
    direction = Direction(torch.randn(pair.n_layers, pair.d_model), DirectionInfo("bench", "random", "-"),
                          torch.full((pair.n_layers,), 100.0))
    spec = SteeringSpec(direction, "add", layers=(6,), alpha=0.0)  # alpha 0: same text, so the same token count
    decoding = DecodingSettings(max_new_tokens=64)
    print("\n1. generation, 64 new tokens (min_new_tokens forces the full length)")
    for batch in (1, 8):
        prompts = [f"Write a sentence about the number {i}." for i in range(batch)]
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                 for p in prompts]
        kwargs = dict(min_new_tokens=64)
        plain = best_of(lambda: _generate(model, tok, texts, decoding, None, kwargs), 2)
        hooked = best_of(lambda: _generate(model, tok, texts, decoding, spec, kwargs), 2)
        print(f"   batch {batch}: plain {plain:6.2f} s ({64 * batch / plain:5.1f} tok/s), steered {hooked:6.2f} s: "
              f"hook overhead {100 * (hooked / plain - 1):+.1f}%")


def _generate(model, tok, texts, decoding, spec, kwargs):
    batch = encode(tok, texts)
    with (spec.applied(model) if spec else _null()):
        with torch.no_grad():
            return model.generate(**batch, **decoding.generate_kwargs(), **kwargs)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def bench_extraction(pair, use_nnsight: bool) -> None:
    model, tok = pair.base, pair.tokenizer
    data = statements(128)
    batches = [encode(tok, data[i:i + 16]) for i in range(0, len(data), 16)]
    stack = model.model

    @torch.no_grad()
    def stack_only():
        for b in batches:
            stack(**b, use_cache=False)

    @torch.no_grad()
    def plain_forward():
        for b in batches:
            model(**b, use_cache=False, output_hidden_states=True)

    ours = lambda: collect_residuals(model, tok, data, batch_size=16)  # noqa: E731
    print("\n2. residual stream at the last token, all 18 layers, 128 statements, batch 16")
    results = {"decoder stack alone (limit)": best_of(stack_only), "ours (collect_residuals)": best_of(ours),
               "plain forward": best_of(plain_forward)}
    if use_nnsight:
        from nnsight import LanguageModel

        wrapped = LanguageModel(model, tokenizer=tok)
        results["nnsight trace + .save()"] = best_of(lambda: _nnsight(wrapped, batches), 2)
    limit, mine = results["decoder stack alone (limit)"], results["ours (collect_residuals)"]
    for name, seconds in results.items():
        print(f"   {name:28s} {seconds:6.2f} s   {seconds / limit:5.2f}x the limit   {seconds / mine:5.2f}x ours")


def _nnsight(wrapped, batches):
    """Every layer's input (resid_pre) for each batch, saved through nnsight's trace; the last token is sliced
    afterwards, as nnsight runs the whole model (unembedding included) anyway."""
    import nnsight

    out = []
    for b in batches:
        with torch.no_grad(), wrapped.trace(dict(b)):
            saved = nnsight.save([])
            for layer in wrapped.model.layers:
                saved.append(layer.input)
        out.append(torch.stack([h[:, -1] for h in saved], dim=1))
    return out


def bench_load() -> None:
    print("\n3. pair load time (demo base and post-trained model)")
    warm = best_of(lambda: load_pair("demo"), 2)
    with tempfile.TemporaryDirectory() as empty:
        code = "import time; t=time.perf_counter(); from steering import load_pair; load_pair('demo'); " \
               "print(time.perf_counter()-t)"
        env = {**os.environ, "PLAYGROUND_CACHE": empty}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        cold = float(out.stdout.strip().splitlines()[-1])
    print(f"   cold (GGUF -> safetensors, adapter merge) {cold:6.1f} s; warm (from the cache) {warm:5.1f} s; "
          f"cold/warm {cold / warm:4.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold load (about two minutes)")
    parser.add_argument("--skip-nnsight", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    pair = load_pair("demo")
    print(f"demo pair on {pair.settings.device}, {pair.settings.dtype}, torch threads {torch.get_num_threads()}")
    bench_generation(pair)
    bench_extraction(pair, use_nnsight=not args.skip_nnsight)
    if not args.skip_cold:
        bench_load()


if __name__ == "__main__":
    main()
