"""The truthfulness study's default, Du et al.'s method, against a slow, obvious implementation of the paper's steps
written here with plain torch hooks on tiny random models: activations at each statement's last token (statement
alone), each training set centred on its own mean and pooled, the direction mean(true) - mean(false), the probe
layer and the first steered layer by depth fraction (block-output numbering, resid_pre = output + 1), the direction
added whole (coefficient alpha) at every steered layer at the statement's last token and its period, false
statements pushed towards TRUE and true ones towards FALSE, a few-shot prompt reshuffled per statement, and the
normalised intervention effect.

Tolerances (DESIGN.md, "Numbers that hold on any machine"): a float32 sum of n terms of size |x| is off by about
sqrt(n)·ε·|x| typically and n·ε·|x| at worst (ε = 1.2e-7). The study runs padded batches and the reference one
unpadded prompt at a time, so the two take different kernels; each activation is the end of a chain of dot products
no longer than the MLP's width (64 here) through every block, so we allow the worst case of each block in turn,
relative to the magnitude compared (the largest activation, the largest logit)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import save_tiny_pair

from analyses.truth_score import SUFFIX
from analyses.truthfulness import STUDY, Config, run
from analyses.truthfulness.compute import choose_layers, paper_layer
from analyses.truthfulness.config import PAPER_TRAIN_SETS
from steering import InvalidInputError, load_pair

EPS = 1.2e-7  # float32's unit roundoff
WIDTH = 64  # the longest dot product in a tiny block (its MLP width)
ANSWERS = ("true", "false")


def _set(n_facts: int, offset: int, drop_false: int = 0) -> pd.DataFrame:
    """A tiny statement set: a fact's true and false statements differ in their object; `drop_false` leaves out
    that many false ones, so that the set is unbalanced and centring it moves the pooled direction."""
    rows = []
    for fact in range(n_facts):
        for label, obj in ((1, f"w{(fact + offset) % 30}"), (0, f"w{30 + (fact * 7 + offset) % 30}")):
            if label == 0 and fact < drop_false:
                continue
            rows.append({"statement": f"the w{(fact * 3 + offset) % 90} is a {obj} .", "label": label,
                         "subject": "", "object": obj, "fact": fact, "split": "test" if fact % 4 == 0 else "train"})
    return pd.DataFrame(rows)


SETS = {"translations": _set(14, 5, drop_false=6), "animals": _set(10, 41), "elements": _set(8, 67, drop_false=2)}
HELD_OUT = _set(16, 0)
# the paper's method, on a 3-layer model: probe at block output round(0.375 x 3) = 1 (resid_pre 2), steering from
# block output 0 (resid_pre 1), so that the direction is added whole at two layers
CONFIG = Config(dataset="tiny", n_shots=4, n_steer=10, n_calib=6, alphas=(1.0, 24.0), answers=ANSWERS,
                start_fraction=0.0, batch_size=5)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("tr-paper"))
    return load_pair(base=base, post=post)


@pytest.fixture(scope="module")
def result(tiny_pair):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("analyses.truthfulness.compute.statement_set", lambda name: SETS[name])
        return run(tiny_pair, CONFIG, data=HELD_OUT)


# ---- the reference: plain hooks, one prompt at a time ---------------------------------------------------------

def _layers(model):
    return model.model.layers


@torch.no_grad()
def _resid_at_last_token(model, tok, statement: str) -> torch.Tensor:
    """[n_layers, d] the stream entering each block at the statement's last token, the statement alone."""
    seen = {}
    handles = [layer.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0][0, -1].clone()))
               for i, layer in enumerate(_layers(model))]
    try:
        model(**tok(statement, return_tensors="pt"))
    finally:
        for h in handles:
            h.remove()
    return torch.stack([seen[i] for i in range(len(seen))])


def _paper_direction(model, tok) -> tuple[torch.Tensor, float]:
    """Each set's activations minus its own mean, pooled; mean(true) - mean(false). Also the largest |activation|."""
    centred, labels, scale = [], [], 0.0
    for name in PAPER_TRAIN_SETS:
        acts = torch.stack([_resid_at_last_token(model, tok, s) for s in SETS[name]["statement"]]).double()
        scale = max(scale, float(acts.abs().max()))
        centred.append(acts - acts.mean(0))
        labels += list(SETS[name]["label"])
    pooled, labels = torch.cat(centred), torch.tensor(labels)
    return (pooled[labels == 1].mean(0) - pooled[labels == 0].mean(0)), scale


@torch.no_grad()
def _score(model, tok, prefix: str, statement: str, vector: torch.Tensor | None, layers: list[int],
           coefficient: float) -> tuple[float, float]:
    """P(true) - P(false) after `prefix + statement + SUFFIX`, with coefficient x vector added entering each of
    `layers` at the statement's last token and its period; also the largest |logit|."""
    ids = tok(prefix + statement + SUFFIX, return_tensors="pt").input_ids
    upto = len(tok(prefix + statement).input_ids)  # the statement's tokens end here: its word, then its '.'
    positions = [upto - 2, upto - 1]
    assert tok.convert_ids_to_tokens(int(ids[0, upto - 1])) == "."

    def add(module, args):
        hidden = args[0].clone()
        hidden[0, positions] += coefficient * vector.to(hidden.dtype)
        return (hidden, *args[1:])

    handles = [] if vector is None else [_layers(model)[i].register_forward_pre_hook(add) for i in layers]
    try:
        logits = model(input_ids=ids).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    probs = torch.softmax(logits, -1)
    true_id, false_id = (tok(" " + a, add_special_tokens=False).input_ids[0] for a in ANSWERS)
    return float(probs[true_id] - probs[false_id]), float(logits.abs().max())


# ---- the tests ------------------------------------------------------------------------------------------------

def test_the_default_is_the_papers_method():
    config = Config()
    assert (config.method, config.spread, config.shuffle, config.alphas, config.n_steer) == \
        ("paper", "full", "per_statement", (1.0,), 200)
    assert config.train_sets == ("translations", "animals", "elements") and config.dataset == "cities"
    assert STUDY.version == "truthfulness@3"
    # Llama-3.1-8B: probe at block output 12, steering from output 8 (resid_pre 13 and 9)
    assert paper_layer(0.375, 32, "p") == 13 and paper_layer(0.25, 32, "s") == 9
    # Gemma 3 270M (18 layers): outputs 7 and 4, the tester's 4-7, i.e. resid_pre 5..8
    probe, steered = choose_layers(config, list(range(18)), np.zeros(18), 18)
    assert probe == 8 and steered == [5, 6, 7, 8]
    with pytest.raises(InvalidInputError, match="probe_fraction"):
        paper_layer(0.99, 18, "probe_fraction")


def test_the_held_out_set_may_not_train_the_direction():
    class NoModels:
        n_layers = 3

        def models(self):
            raise AssertionError("a model ran before the settings were checked")

    with pytest.raises(InvalidInputError, match="holds cities out"):
        run(NoModels(), Config(train_sets=("cities", "animals")), data=HELD_OUT)
    with pytest.raises(InvalidInputError, match="unknown: inventors"):
        run(NoModels(), Config(train_sets=("inventors",)), data=HELD_OUT)


@pytest.mark.numeric
def test_the_direction_is_the_pooled_per_set_centred_mass_mean(tiny_pair, result):
    tok = tiny_pair.tokenizer
    n = sum(len(f) for f in SETS.values())
    for role, model in tiny_pair.models().items():
        expected, scale = _paper_direction(model, tok)
        got = result.directions[role].vectors.double()
        # per activation: the worst case of each block's longest dot product, relative to the largest activation;
        # then the means of n centred activations: the worst case of a sum of n terms
        tol = (len(_layers(model)) * WIDTH + 2 * n) * EPS * scale
        assert (got - expected).abs().max() <= tol, role
        assert expected[1:].norm(dim=-1).min() > 100 * tol  # the comparison has teeth
        # sign: true minus false, and centring matters here (two sets are unbalanced)
        uncentred = torch.cat([torch.stack([_resid_at_last_token(model, tok, s) for s in SETS[name]["statement"]])
                               for name in PAPER_TRAIN_SETS]).double()
        labels = torch.tensor([v for name in PAPER_TRAIN_SETS for v in SETS[name]["label"]])
        plain = uncentred[labels == 1].mean(0) - uncentred[labels == 0].mean(0)
        assert (plain - expected)[1:].abs().max() > 100 * tol
        assert (got + expected)[1:].abs().max() > 100 * tol
    stats = result.direction_stats.set_index("layer")
    base, post = (result.directions[r].vectors.double() for r in ("base", "post"))
    cos = torch.nn.functional.cosine_similarity(base, post, dim=-1)
    assert np.allclose(stats["cosine"].to_numpy()[1:], cos.numpy()[1:], atol=1e-5)  # unit-norm: ~d·ε each
    for role, v in (("base", base), ("post", post)):
        squares = (v ** 2)[1:]
        top1 = squares.max(-1).values / squares.sum(-1)
        top3 = squares.topk(3, dim=-1).values.sum(-1) / squares.sum(-1)
        assert np.allclose(stats[f"top1_share_{role}"].to_numpy()[1:], top1.numpy(), atol=1e-5)
        assert np.allclose(stats[f"top3_share_{role}"].to_numpy()[1:], top3.numpy(), atol=1e-5)


def test_layers_positions_and_per_statement_shuffles(result):
    assert result.method == "paper" and result.spread == "full"
    assert result.probe_layer == 2 and result.steer_layers == [1, 2]
    orders = result.steered.query("direction == 'base' and model == 'base' and alpha == 1.0")["order"]
    assert all(sorted(map(int, o.split())) == [0, 1, 2, 3] for o in orders)
    assert orders.nunique() > 1  # reshuffled per statement, not one fixed order
    assert len(result.shots) == 4 and result.prefix == "".join(result.shots)
    # every statement of the held-out set but those in the prompt's facts is steered (n_steer 10 of them)
    assert len(orders) == 10 and set(orders.index) == set(range(10))


@pytest.mark.numeric
def test_the_2x2_and_its_normalised_effect_match_the_hooks(tiny_pair, result):
    tok, models = tiny_pair.tokenizer, tiny_pair.models()
    rows = result.steered
    worst, moved, score_tol = 0.0, 0.0, 0.0
    effects = {}
    for (source, role, alpha), cell in rows.groupby(["direction", "model", "alpha"]):
        vector = result.directions[source].at(result.probe_layer)
        per = []
        for r in cell.itertuples():
            prefix = "".join(result.shots[int(i)] for i in r.order.split())
            sign = 1.0 if r.label == 0 else -1.0  # false towards TRUE, true towards FALSE
            before, scale_b = _score(models[role], tok, prefix, r.statement, None, [], 0.0)
            after, scale_a = _score(models[role], tok, prefix, r.statement, vector, result.steer_layers,
                                    sign * alpha)
            # a logit is a chain of dot products through every block and the unembedding, each at most WIDTH long;
            # a probability moves by at most half the largest logit error
            tol = (len(_layers(models[role])) + 1) * WIDTH * EPS * max(scale_b, scale_a)
            assert abs(before - r.score_before) <= tol and abs(after - r.score_after) <= tol
            moved, score_tol = max(moved, abs(after - before)), max(score_tol, tol)
            target = -1.0 if r.label == 1 else 1.0
            per.append((after - before) / (target - before))
            worst = max(worst, tol / abs(target - before))
        effects[source, role, alpha] = float(np.mean(per))
    table = result.transfer.set_index(["direction", "model", "alpha"])
    for key, expected in effects.items():
        # each statement's effect is off by its two scores' error over its room to the end
        assert abs(table.loc[key, "normalised_effect"] - expected) <= 2 * worst, key
    # the steering moved the scores well beyond the tolerance (a tiny model's P(true) and P(false) are both near
    # 1/vocabulary, so its effects are small next to 1, but not next to float32's error)
    assert moved > 20 * score_tol
    assert max(abs(v) for k, v in effects.items() if k[2] == 24.0) > 10 * 2 * worst


def test_single_set_is_kept_as_an_option(tiny_pair):
    from analyses.truthfulness.config import single_set

    config = single_set(dataset="tiny", n_train=0, n_test=0, n_shots=2, n_steer=4, n_calib=4, alphas=(1.0,),
                        answers=ANSWERS, batch_size=8)
    result = run(tiny_pair, config, data=HELD_OUT)
    assert result.method == "single_set" and result.spread == "split" and result.train_sets == []
    assert result.steered["order"].nunique() == 1
    assert "cosine_single_set" not in result.direction_stats
    with pytest.raises(InvalidInputError, match="spread"):
        run(tiny_pair, replace(config, spread="half"), data=HELD_OUT)
