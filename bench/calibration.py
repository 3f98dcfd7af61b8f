"""Calibration benchmark and acceptance run on the demo pair, measured side by side in one run.

    python -m bench.calibration [--n 16] [--alphas 0.02,0.05,...] [--layers all] [--generate frontier|all]
                                [--skip-acceptance] [--save FILE]

1. the calibration (steering/calibration.py) of the post-trained model's refusal direction (the refusal study's
   shipped result) over every layer x 8 strengths on 16 held-out harmless prompts (the refusal study's validation
   split) + 16 neutral texts, against its floor (`floor`: the same passes with no steering and no scoring), timed
   twice after it (a floor run before it warms up the kernels: the first passes of a process are slower);
2. acceptance, on prompts the calibration never saw (the refusal study's test split, other neutral texts), 24 new
   tokens: the rule's pick under three damage budgets and the playground's hand pick (layer 9, alpha 0.1) added to
   harmless prompts; the study's affine ablation and Arditi's projection on harmful prompts; each with its refusal
   rate and damage (KL on neutral text, perplexity of the replies under the unsteered model, repetition).
3. (--subtract) the direction subtracted, calibrated on harmful validation prompts, measured on the test ones;
4. (--ablation) the affine ablation calibrated (strength x first layer), measured on the harmful test prompts.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from steering.calibration import MAX_ROWS, Behaviour, Calibration, DamageBudget, calibrate, measure, unsteered
from steering.calibration_passes import reply_lengths, reply_perplexities, stop_ids
from steering.generation import DecodingSettings, format_prompts
from steering.interventions import add, record
from steering.model_view import ModelView
from steering.refusal_data import refusal_study_split
from steering.registry import ASSETS
from steering.resume import resume_at
from steering.tokens import encode

ALPHAS = (0.02, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4)
HAND_PICK = (9, 0.1)  # the playground's default layer and alpha
BUDGETS = (DamageBudget(), DamageBudget(max_kl=1.0), DamageBudget(max_kl=2.0))


def neutral_texts() -> list[str]:
    return [ln for ln in (ASSETS / "diffing" / "plain_text.txt").read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")]


def load():
    from analyses.refusal import STUDY
    from analyses.refusal.scores import refusal_token_ids
    from analyses.store import shipped
    from steering import load_pair

    pair = load_pair("demo")
    found = shipped(STUDY, pair)
    if found is None or found.reason is not None:
        raise SystemExit(f"the shipped refusal result is not current: {found.reason if found else 'none'}")
    return pair, found.stored.result, Behaviour.refusal(refusal_token_ids(pair.tokenizer))


@torch.no_grad()
def floor(model, tokenizer, prompts, neutral, layers, n_alphas: int, n_generated: int, max_new_tokens: int) -> float:
    """The calibration's passes without steering or scoring (steering.calibration_passes): one plain pass over each
    set of texts recording the stream entering every layer; per layer, each set repeated once per strength,
    resumed at that layer and unembedded at its last token; then plain generate calls of the same new tokens (all
    of them: min_new_tokens) with the forward that scores the replies, for the unsteered rows and the
    `n_generated` settings, in calls of MAX_ROWS rows (the calibration makes as many calls or more)."""
    view = ModelView.of(model)
    batches = [encode(tokenizer, prompts), encode(tokenizer, neutral)]
    points = [f"resid_pre.{layer}" for layer in layers]
    kwargs = DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs()
    start = time.perf_counter()
    streams = []
    for batch in batches:
        with record(model, points, positions="all") as rec:
            view.logits(view.decoder_stack(**batch, use_cache=False).last_hidden_state[:, -1])
        streams.append(rec)
    for layer in layers:
        for batch, rec in zip(batches, streams):
            with resume_at(model, layer, rec.get(f"resid_pre.{layer}").repeat(n_alphas, 1, 1)):
                view.logits(view.decoder_stack(input_ids=batch.input_ids.repeat(n_alphas, 1), use_cache=False,
                                               attention_mask=batch.attention_mask.repeat(n_alphas, 1))
                            .last_hidden_state[:, -1])
    per_call = max(1, MAX_ROWS // len(prompts))
    settings = n_generated + 1
    for first in range(0, settings, per_call):
        repeats = min(per_call, settings - first)
        ids, mask = batches[0].input_ids.repeat(repeats, 1), batches[0].attention_mask.repeat(repeats, 1)
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs, min_new_tokens=max_new_tokens)
        new = out[:, ids.shape[1]:]
        reply_perplexities(model, ids, mask, new, reply_lengths(new, stop_ids(model, tokenizer)))
    return time.perf_counter() - start


def bench(pair, result, behaviour, n: int, layers, alphas, max_new_tokens: int = 8,
          generate: str = "frontier", settle=()) -> Calibration:
    prompts = format_prompts(pair.tokenizer, refusal_study_split("harmless.txt", "val")[:n])
    neutral = neutral_texts()[:n]
    load_before = os.getloadavg()[0]
    floor_before = floor(pair.post, pair.tokenizer, prompts, neutral, layers, len(alphas), 0, max_new_tokens)
    start = time.perf_counter()
    found = calibrate(pair.post, pair.tokenizer, result.directions["post"], behaviour, prompts, neutral,
                      layers=layers, alphas=alphas, max_new_tokens=max_new_tokens, generate=generate,
                      settle=settle)
    took = time.perf_counter() - start
    n_generated = sum(s.generated for s in found.settings)
    floors = [floor(pair.post, pair.tokenizer, prompts, neutral, layers, len(alphas), n_generated, max_new_tokens)
              for _ in range(2)]  # (the one before ran first and warmed up; it generated for no setting)
    print(f"1. calibration, {len(layers)} layers x {len(alphas)} strengths on {len(prompts)} + {len(neutral)} prompts, "
          f"{max_new_tokens} new tokens, replies generated at {n_generated} of {len(found.settings)} settings "
          f"(generate={generate!r}{', settling ' + str(len(settle)) + ' more budgets' if settle else ''}), "
          f"{torch.get_num_threads()} threads: {took:.1f} s; its floor {floors[0]:.1f} s and "
          f"{floors[1]:.1f} s after it: {took / min(floors):.2f}x the faster floor (the floor's screen alone "
          f"{floor_before:.1f} s before it) (load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after)")
    return found


def compare_records(ours: Calibration, theirs: Calibration, name: str) -> None:
    """How far this sweep's single-forward measures are from another record's of the same settings, and both picks."""
    pairs = [(a, b) for a in ours.settings for b in theirs.settings if (a.layer, a.alpha) == (b.layer, b.alpha)]
    effect = max(abs(a.effect - b.effect) for a, b in pairs)
    kl = max(abs(a.kl - b.kl) for a, b in pairs)
    near = [abs(a.kl - b.kl) / b.kl for a, b in pairs if 0.05 <= b.kl <= 2.0]  # where the budgets draw their lines
    print(f"   against {name} ({len(pairs)} settings in common): effect differs by at most {effect:.3g} "
          f"{ours.behaviour.unit}, KL by at most {kl:.3g} (at most {100 * max(near, default=0):.1f}% of it where it "
          f"is 0.05-2); pick {ours.pick.layer, ours.pick.alpha} here, {theirs.pick.layer, theirs.pick.alpha} there")


def _row(name: str, setting, texts) -> str:
    rate = "n/a" if setting.refusal_rate is None else f"{100 * setting.refusal_rate:.0f}%"
    return (f"   {name:<34} refusal {rate:>4}  KL {setting.kl:7.3f}  perplexity {setting.perplexity:9.3g}  "
            f"repetition {setting.repetition:.2f}\n" + "\n".join(f"      {t.strip()[:90]!r}" for t in texts[:3]))


def acceptance(pair, result, behaviour, found: Calibration, n: int, max_new_tokens: int = 24) -> None:
    from analyses.refusal.selection import ablation_for

    model, tok = pair.post, pair.tokenizer
    neutral = neutral_texts()[16:16 + n]  # not the calibration's
    harmless = format_prompts(tok, refusal_study_split("harmless.txt", "test")[:n])
    harmful = format_prompts(tok, refusal_study_split("harmful.txt", "test")[:n])
    direction = result.directions["post"]
    print(f"2. on held-out prompts ({len(harmless)} harmless, {len(harmful)} harmful, refusal-study test split; "
          f"{len(neutral)} other neutral texts), {max_new_tokens} greedy tokens:")
    picks = []
    for budget in BUDGETS:
        picked = found.with_budget(budget).pick
        print(f"   budget {budget.describe()}: {picked.reason}")
        if picked.layer is not None and (picked.layer, picked.alpha) not in picks:
            picks.append((picked.layer, picked.alpha))
    plain = unsteered(model, tok, behaviour, harmless, neutral, max_new_tokens=max_new_tokens)
    none, texts = measure(model, tok, behaviour, harmless, neutral, None, plain=plain)
    print(_row("harmless, no steering", none, texts))
    for layer, alpha in [*picks, *([HAND_PICK] if HAND_PICK not in picks else [])]:
        vector = direction.steering_vectors([layer], alpha)
        setting, texts = measure(model, tok, behaviour, harmless, neutral, lambda v=vector: add(model, v),
                                 max_new_tokens=max_new_tokens, label=(layer, alpha), plain=plain)
        kind = " and ".join(k for k, hit in (("rule's pick", (layer, alpha) in picks),
                                             ("hand pick", (layer, alpha) == HAND_PICK)) if hit)
        print(_row(f"harmless, add L{layer} a{alpha:g} ({kind})", setting, texts))
    plain = unsteered(model, tok, behaviour, harmful, neutral, max_new_tokens=max_new_tokens)
    none, texts = measure(model, tok, behaviour, harmful, neutral, None, plain=plain)
    print(_row("harmful, no steering", none, texts))
    selected = int(result.selected.query("model == 'post'").layer.iloc[0])
    vector = direction.at(selected)
    for method in ("affine", "project"):
        make = ablation_for(model, vector, result.harmless_means["post"], result.positions, method)
        setting, texts = measure(model, tok, behaviour, harmful, neutral, make, max_new_tokens=max_new_tokens,
                                 plain=plain)
        print(_row(f"harmful, ablate L{selected} ({method})", setting, texts))


def subtraction(pair, result, behaviour, n: int, n_test: int, layers, alphas, max_new_tokens: int = 24) -> None:
    """The direction subtracted (negative alphas, aim 'lower'): calibrated on harmful validation prompts, its
    pick under each budget measured on the harmful test prompts, as an alternative to the ablations of 2."""
    model, tok = pair.post, pair.tokenizer
    direction = result.directions["post"]
    found = calibrate(model, tok, direction, behaviour,
                      format_prompts(tok, refusal_study_split("harmful.txt", "val")[:n]), neutral_texts()[:n],
                      layers=layers, alphas=alphas, aim="lower", settle=BUDGETS[1:])
    neutral = neutral_texts()[16:16 + n_test]
    harmful = format_prompts(tok, refusal_study_split("harmful.txt", "test")[:n_test])
    print(f"3. the direction subtracted, calibrated on {n} harmful validation prompts ({len(layers)} layers x "
          f"{len(alphas)} strengths), measured on {len(harmful)} harmful test prompts, {max_new_tokens} tokens:")
    plain = unsteered(model, tok, behaviour, harmful, neutral, max_new_tokens=max_new_tokens)
    done = set()
    for budget in BUDGETS:
        picked = found.with_budget(budget).pick
        print(f"   budget {budget.describe()}: {picked.reason}")
        if picked.layer is None or (picked.layer, picked.alpha) in done:
            continue
        done.add((picked.layer, picked.alpha))
        vector = direction.steering_vectors([picked.layer], picked.alpha)
        setting, texts = measure(model, tok, behaviour, harmful, neutral, lambda v=vector: add(model, v),
                                 max_new_tokens=max_new_tokens, label=(picked.layer, picked.alpha), plain=plain)
        print(_row(f"harmful, add L{picked.layer} a{picked.alpha:g}", setting, texts))


def ablation(pair, result, behaviour, n: int, n_test: int, layers, strengths, max_new_tokens: int = 24) -> None:
    """The study's affine ablation calibrated (calibrate_ablation: strength beta at every layer from the first
    one on, aim 'lower') on harmful validation prompts, and its pick under each budget measured on the harmful
    test prompts, beside the whole ablation (from layer 0, strength 1)."""
    from steering.calibration import calibrate_ablation, label
    from steering.interventions import affine_ablate

    model, tok = pair.post, pair.tokenizer
    selected = int(result.selected.query("model == 'post'").layer.iloc[0])
    vector = result.directions["post"].at(selected)
    unit = vector / vector.norm()
    mean = result.harmless_means["post"]
    reference = {layer: float(mean[layer] @ unit) for layer in range(mean.shape[0])}
    where = range(min(result.positions), 10_000)  # as the study ablates: post-instruction and generated tokens
    start = time.perf_counter()
    found = calibrate_ablation(model, tok, vector, reference, behaviour,
                               format_prompts(tok, refusal_study_split("harmful.txt", "val")[:n]),
                               neutral_texts()[:n], layers=layers, strengths=strengths, aim="lower", positions=where,
                               settle=BUDGETS[1:])
    took = time.perf_counter() - start
    neutral = neutral_texts()[16:16 + n_test]
    harmful = format_prompts(tok, refusal_study_split("harmful.txt", "test")[:n_test])
    print(f"4. the affine ablation of the layer-{selected} direction calibrated on {n} harmful validation prompts "
          f"(first layer {', '.join(map(str, layers))} x strength {', '.join(map(str, strengths))}; {took:.0f} s, "
          f"replies at {sum(s.generated for s in found.settings)} of {len(found.settings)} settings), measured on "
          f"{len(harmful)} harmful test prompts, {max_new_tokens} tokens:")
    plain = unsteered(model, tok, behaviour, harmful, neutral, max_new_tokens=max_new_tokens)
    picks = [(0, 1.0)]
    for budget in BUDGETS:
        picked = found.with_budget(budget).pick
        print(f"   budget {budget.describe()}: {picked.reason}")
        if picked.layer is not None and (picked.layer, picked.alpha) not in picks:
            picks.append((picked.layer, picked.alpha))
    for first, beta in picks:
        def ablated(first=first, beta=beta):
            return affine_ablate(model, vector, reference, layers=range(first, pair.n_layers), positions=where,
                                 strength=beta)

        setting, texts = measure(model, tok, behaviour, harmful, neutral, ablated, max_new_tokens=max_new_tokens,
                                 label=(first, beta), plain=plain)
        print(_row(f"harmful, {label(first, beta, 'affine')}"[:60], setting, texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="held-out prompts and neutral texts each")
    parser.add_argument("--alphas", default=",".join(map(str, ALPHAS)))
    parser.add_argument("--layers", default="all", help="'all' or e.g. 3,6,9,12")
    parser.add_argument("--n-test", type=int, default=24, help="held-out prompts per set in the acceptance run")
    parser.add_argument("--generate", choices=("frontier", "all"), default="frontier",
                        help="where the calibration generates replies (see steering.calibration.calibrate)")
    parser.add_argument("--skip-acceptance", action="store_true")
    parser.add_argument("--subtract", help="also 3: negative alphas to calibrate the subtraction with, e.g. "
                                           "-0.05,-0.1,-0.2")
    parser.add_argument("--only-subtract", action="store_true", help="run 3 alone")
    parser.add_argument("--ablation", help="also 4: strengths to calibrate the affine ablation with, e.g. "
                                           "0.25,0.5,0.75,1")
    parser.add_argument("--only-ablation", action="store_true", help="run 4 alone")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="run the post-trained model in this precision (as the sidebar's Precision loads it)")
    parser.add_argument("--compare", help="a calibration record (JSON) of the same sweep to compare this one with: "
                                          "the largest differences of effect and KL, and both picks")
    parser.add_argument("--save", help="write the calibration record (JSON) here")
    parser.add_argument("--load", help="skip 1 and take the calibration from this record")
    args = parser.parse_args()
    pair, result, behaviour = load()
    if args.dtype == "bfloat16":
        pair.post.to(torch.bfloat16)
    alphas = [float(a) for a in args.alphas.split(",")]
    layers = list(range(pair.n_layers)) if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    if args.only_ablation or args.ablation:
        ablation(pair, result, behaviour, args.n, args.n_test, layers, [float(a) for a in args.ablation.split(",")])
        if args.only_ablation:
            return
    if args.only_subtract or args.subtract:
        subtraction(pair, result, behaviour, args.n, args.n_test, layers, [float(a) for a in args.subtract.split(",")])
        if args.only_subtract:
            return
    if args.load:
        with open(args.load, encoding="utf-8") as f:
            found = Calibration.from_json(f.read())
    else:
        found = bench(pair, result, behaviour, args.n, layers, alphas, generate=args.generate,
                      settle=() if args.skip_acceptance else BUDGETS[1:])  # the acceptance re-picks under all three
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            f.write(found.to_json())
    if args.compare:
        with open(args.compare, encoding="utf-8") as f:
            compare_records(found, Calibration.from_json(f.read()), args.compare)
    print(f"   pick: {found.pick.reason}")
    if not args.skip_acceptance:
        acceptance(pair, result, behaviour, found, args.n_test)


if __name__ == "__main__":
    main()
