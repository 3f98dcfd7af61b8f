"""Benchmark: the diffing study's per-token divergence and logit lens for a 512-token text on the demo pair, against
its floor, measured side by side in one run.

    python -m bench.diffing [--pair demo] [--tokens 512] [--repeats 3]

The floor is two plain forward passes, one per model, over the same text, with logits at every position unembedded
in the same position chunks (divergence.CHUNK_BYTES) and nothing else: no log-softmax, no KL, no recording, no
lens. The study's part is `divergence.diff_text` (KL both ways, TV and ranks at every position, then the lens of
both models at the peak of KL from the stream recorded in the same pass). Each is timed `--repeats` times,
alternating, and the fastest of each is compared, by the wall clock and by this process's CPU time (which other
work on a shared machine disturbs less): `DIFFING wall|cpu seconds=<s> floor_seconds=<f> ratio=<s/f>` (target:
ratio <= 1.5).

    python -m bench.diffing --sums [--vocab 262144]

times the sums over the vocabulary alone on one position chunk (random logits: the arithmetic does not depend on
the values), the study's pairwise `sum` against diffing@1's one float32 einsum per row, alternating:
`KL_SUMS wall seconds=<pairwise> einsum_seconds=<einsum> ratio=<pairwise/einsum>`."""
from __future__ import annotations

import argparse
import os
import time

import torch

from analyses.diffing.data import DiffingData, plain_texts
from analyses.diffing.difference import first_tokens
from analyses.diffing.divergence import _measures, chunk_size, diff_text
from steering import load_pair
from steering.model_view import ModelView
from steering.tokens import encode


@torch.no_grad()
def full_pass(model, ids: torch.Tensor) -> None:
    """One plain forward pass over one text [1, seq], logits at every position in the study's chunks."""
    view = ModelView.of(model)
    hidden = view.decoder_stack(input_ids=ids.to(view.device), attention_mask=torch.ones_like(ids).to(view.device),
                                use_cache=False).last_hidden_state[0]
    step = chunk_size(view.unembedding.weight.shape[0])
    for start in range(0, hidden.shape[0], step):
        view.logits(hidden[start:start + step].to(view.unembedding.weight.dtype))


def floor(pair, config, data: DiffingData) -> float:
    """Seconds of the passes the default run strictly needs: per model, a full pass over each per-token text
    (logits at every position, same chunks), and a decoder-stack pass over the plain texts' first k tokens (the
    stream is all the difference reads), batched as the study batches them."""
    ids, _ = first_tokens(pair.tokenizer, data.plain, config.k)
    start = time.perf_counter()
    for model in pair.models().values():
        view = ModelView.of(model)
        for _, text in data.texts:
            full_pass(model, encode(pair.tokenizer, [text])["input_ids"])
        for i in range(0, len(ids), config.batch_size):
            batch = ids[i:i + config.batch_size].to(view.device)
            with torch.no_grad():
                view.decoder_stack(input_ids=batch, attention_mask=torch.ones_like(batch), use_cache=False)
    return time.perf_counter() - start


def long_text(tokenizer, n_tokens: int) -> torch.Tensor:
    """[1, n_tokens] the plain texts one after another, cut at n_tokens (BOS first)."""
    ids = encode(tokenizer, [" ".join(plain_texts() * 4)])["input_ids"][:, :n_tokens]
    if ids.shape[-1] < n_tokens:
        raise SystemExit(f"the plain texts give only {ids.shape[-1]} tokens")
    return ids


def _timed(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call: on a shared machine the CPU time is what other
    work disturbs least."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def einsum_measures(logp_post: torch.Tensor, logp_base: torch.Tensor) -> dict[str, torch.Tensor]:
    """diffing@1's sums, for the comparison: one float32 einsum per row (up to 0.02 nats low at high KL)."""
    p_post, p_base = logp_post.exp(), logp_base.exp()
    gap = logp_post.sub_(logp_base)
    return {"kl_post_base": torch.einsum("pv,pv->p", p_post, gap),
            "kl_base_post": -torch.einsum("pv,pv->p", p_base, gap), "tv": 0.5 * p_post.sub_(p_base).abs_().sum(-1)}


def sums(vocab: int, repeats: int) -> None:
    """The sums over the vocabulary on one position chunk, pairwise against one einsum per row, side by side."""
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(chunk_size(vocab), vocab, generator=generator) * 3 for _ in range(2)]
    logp = [x.log_softmax(-1) for x in logits]
    timed: dict[str, list[float]] = {"pairwise": [], "einsum": []}
    for _ in range(repeats):
        for name, measures in (("pairwise", _measures), ("einsum", einsum_measures)):
            inputs = [x.clone() for x in logp]  # the measures consume their inputs
            timed[name].append(_timed(lambda: measures(*inputs))[0])
    print(f"{chunk_size(vocab)} x {vocab} chunk; {torch.get_num_threads()} threads; pairwise runs "
          f"{[round(t, 3) for t in timed['pairwise']]}; einsum runs {[round(t, 3) for t in timed['einsum']]}")
    best = {k: min(v) for k, v in timed.items()}
    print(f"KL_SUMS wall seconds={best['pairwise']:.3f} einsum_seconds={best['einsum']:.3f} "
          f"ratio={best['pairwise'] / best['einsum']:.2f}; load average {os.getloadavg()[0]:.2f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="demo")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sums", action="store_true", help="time only the sums over the vocabulary (no model)")
    parser.add_argument("--vocab", type=int, default=262_144, help="with --sums: the vocabulary's size")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.sums:
        sums(args.vocab, max(args.repeats, 5))
        return
    pair = load_pair(args.pair)
    ids, models = long_text(pair.tokenizer, args.tokens), pair.models()
    print(f"{args.tokens}-token text; {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    timed: dict[str, list[tuple[float, float]]] = {"floor": [], "study": []}
    for _ in range(args.repeats):
        timed["floor"].append(_timed(lambda: [full_pass(model, ids) for model in models.values()]))
        timed["study"].append(_timed(lambda: diff_text(pair.tokenizer, models, ids, -1, 10)))
    for i, clock in enumerate(("wall", "cpu")):
        study, base = ([t[i] for t in timed[k]] for k in ("study", "floor"))
        pairs = sorted(s / b for s, b in zip(study, base))
        print(f"{clock}: floor runs {[round(s, 2) for s in base]}; study runs {[round(s, 2) for s in study]}; "
              f"ratio of each pair {[round(r, 2) for r in pairs]} (median {pairs[len(pairs) // 2]:.2f})")
        print(f"DIFFING {clock} seconds={min(study):.2f} floor_seconds={min(base):.2f} "
              f"ratio={min(study) / min(base):.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
