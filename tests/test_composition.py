"""Several steerings at once and the position rules, on tiny random models: the KV cache stays exact in every
position mode, tokens outside the rule are untouched, list order is the order the hooks run in."""
from dataclasses import replace

import pytest
import torch
from numeric import assert_close, forward_tolerance
from tiny import tiny_model, tiny_tokenizer

from steering.composition import (Composition, PositionRule, compose, describe, for_model, parse_alphas,
                                  parse_offsets)
from steering.directions import Direction, DirectionInfo
from steering.errors import IncompatibleDirectionError, InvalidInputError, SettingError
from steering.generation import DecodingSettings, SteeringSpec, compare
from steering.interventions import record
from steering.model_view import ModelView

PROMPTS = ["w1 w2 the cat is", "dog is", "w5 w6 w7 w8 w9 w10 w11 a"]
N_NEW = 6
# each rule with the first generation step whose logits it may change: step k's logits are read at offset k - 1
RULES = [
    (PositionRule("all"), 0),
    (PositionRule("prompt"), 0),
    (PositionRule("generated"), 1),
    (PositionRule("from", start=-2), 0),
    (PositionRule("from", start=2), 3),
    (PositionRule("tokens", tokens=(1, 3)), 2),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _direction(n_layers: int, d_model: int, name: str, g: torch.Generator) -> Direction:
    return Direction(torch.randn(n_layers, d_model, generator=g), DirectionInfo("tiny", name, "h"),
                     torch.full((n_layers,), 6.0))


def _composition(model, rule: PositionRule) -> Composition:
    """An affine ablation, an addition over two layers and a projection ablation, all at the rule's positions."""
    view = ModelView.of(model)
    n, d = view.n_layers, view.d_model
    g = torch.Generator().manual_seed(1)
    at = rule.positions()
    return Composition((
        SteeringSpec(_direction(n, d, "a", g), "ablate", (1,), ablation="affine", positions=at,
                     reference=torch.randn(n, d, generator=g)),
        SteeringSpec(_direction(n, d, "b", g), "add", (0, 1), 1.0, positions=at),
        SteeringSpec(_direction(n, d, "c", g), "ablate", (2,), ablation="project", positions=at),
    ))


def _position_ids(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)  # as generate numbers left-padded rows


def _first_parting(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """The first generation step at which two [batch, steps] token tables differ (None if never)."""
    differs = (a != b).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else None


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt2"])
@pytest.mark.parametrize("rule, first_step", RULES, ids=[r.label() for r, _ in RULES])
def test_composed_steering_is_the_same_with_and_without_the_kv_cache(model_type, rule, first_step, tok):
    model = tiny_model(model_type)
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    prompt_length = batch.input_ids.shape[1]
    steering = _composition(model, rule)
    kwargs = dict(max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False, pad_token_id=0,
                  return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        plain = model.generate(**batch, **kwargs)
        with steering.applied(model):
            cached = model.generate(**batch, **kwargs, use_cache=True)
        with steering.applied(model):
            uncached = model.generate(**batch, **kwargs, use_cache=False)
        # the reference: the cached run's whole sequence in one pass without a cache; the pass over the prompt
        # before it tells the hooks where the prompt ends
        ids = cached.sequences[:, :-1]
        mask = torch.cat([batch.attention_mask, torch.ones(len(PROMPTS), N_NEW - 1, dtype=torch.long)], dim=1)
        with steering.applied(model):
            model(**batch, position_ids=_position_ids(batch.attention_mask), use_cache=False)
            whole = model(input_ids=ids, attention_mask=mask, position_ids=_position_ids(mask), use_cache=False).logits
    reference = whole[:, prompt_length - 1:]  # [batch, N_NEW, vocab]: the logits each step chose from
    steered = torch.stack(cached.logits, dim=1)
    tol = forward_tolerance(model, float(reference.abs().max()))
    assert_close(steered, reference, tol, f"cached vs one uncached pass, {rule.label()}")

    # generate without a cache: the same logits until the tokens part, and they part only at a near tie
    recomputed = torch.stack(uncached.logits, dim=1)
    new_tokens = cached.sequences[:, prompt_length:]
    parting = _first_parting(new_tokens, uncached.sequences[:, prompt_length:])
    upto = N_NEW if parting is None else parting + 1
    assert_close(recomputed[:, :upto], steered[:, :upto], tol, f"cached vs uncached generate, {rule.label()}")
    if parting is not None:
        row = int((new_tokens[:, parting] != uncached.sequences[:, prompt_length + parting]).nonzero()[0])
        step = steered[row, parting]
        gap = step[new_tokens[row, parting]] - step[uncached.sequences[row, prompt_length + parting]]
        assert abs(float(gap)) <= 2 * tol, f"the two runs part at step {parting} by {float(gap):.3g}, not a near tie"

    # the rule writes no token before its first: those steps are the unsteered run's, bit for bit; the first
    # step it may change, it does
    unsteered = torch.stack(plain.logits, dim=1)
    assert torch.equal(steered[:, :first_step], unsteered[:, :first_step])
    assert float((steered[:, first_step] - unsteered[:, first_step]).abs().max()) > 2 * tol


@pytest.mark.parametrize("order, expected", [("ablate first", "alpha"), ("add first", "zero")])
def test_steerings_run_in_list_order(tok, order, expected):
    model = tiny_model("llama")
    view = ModelView.of(model)
    g = torch.Generator().manual_seed(3)
    direction = _direction(view.n_layers, view.d_model, "u", g)
    unit = torch.nn.functional.normalize(direction.at(1), dim=0)
    ablation = SteeringSpec(direction, "ablate", (1,), ablation="project")
    addition = SteeringSpec(direction, "add", (1,), 0.5)
    steerings = (ablation, addition) if order == "ablate first" else (addition, ablation)
    with torch.no_grad(), Composition(steerings).applied(model), \
            record(model, ["resid_pre.1"], positions="all") as seen:
        model(**tok(PROMPTS, return_tensors="pt", padding=True))
    along = seen.get("resid_pre.1") @ unit
    magnitude = float(seen.get("resid_pre.1").abs().max())
    tol = forward_tolerance(model, magnitude, blocks=1)
    want = 0.5 * 6.0 if expected == "alpha" else 0.0  # alpha x the direction's residual norm, or nothing left
    assert_close(along, torch.full_like(along, want), tol, order)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tiny import save_tiny_pair

    from steering import load_pair

    base, post = save_tiny_pair(tmp_path_factory.mktemp("compose-pair"))
    return load_pair(base=base, post=post)


def test_compare_hands_each_models_reference_to_the_affine_members(pair):
    view = ModelView.of(pair.base)
    g = torch.Generator().manual_seed(5)
    direction = _direction(view.n_layers, view.d_model, "d", g)
    references = {role: torch.randn(view.n_layers, view.d_model, generator=g) for role in pair.models()}
    spec = SteeringSpec(direction, "ablate", (0, 1), ablation="affine")
    decoding = DecodingSettings(max_new_tokens=5)
    one = compare(pair.models(), pair.tokenizer, ["the cat is"], spec, decoding=decoding, chat=False,
                  references=references).table
    composed = compare(pair.models(), pair.tokenizer, ["the cat is"], compose([spec]), decoding=decoding,
                       chat=False, references=references).table
    assert composed.text.tolist() == one.text.tolist()  # same machine, same arithmetic: the same tokens
    both = [spec, SteeringSpec(direction, "add", (2,), 0.5, positions="generated")]
    as_list = compare(pair.models(), pair.tokenizer, ["the cat is"], both, decoding=decoding, chat=False,
                      references=references).table
    composed_two = compare(pair.models(), pair.tokenizer, ["the cat is"], Composition(tuple(both)),
                           decoding=decoding, chat=False, references=references).table
    assert as_list.text.tolist() == composed_two.text.tolist()  # a plain list is the composition
    with pytest.raises(InvalidInputError, match="reference"):
        compare(pair.models(), pair.tokenizer, ["the cat is"], compose([spec]), decoding=decoding, chat=False)


def test_compare_hands_each_affine_member_its_own_reference_when_given_one_per_steering(pair):
    view = ModelView.of(pair.base)
    g = torch.Generator().manual_seed(6)
    refusal, truth = (_direction(view.n_layers, view.d_model, name, g) for name in ("refusal", "truth"))
    own = [{role: torch.randn(view.n_layers, view.d_model, generator=g) for role in pair.models()} for _ in range(2)]
    specs = (SteeringSpec(refusal, "ablate", (0, 1), ablation="affine", positions="prompt"),
             SteeringSpec(truth, "add", (2,), 0.5, positions="generated"),
             SteeringSpec(truth, "ablate", (1,), ablation="affine", positions=range(0, 1 << 30)))
    per_steering = [own[0], None, own[1]]
    for role in pair.models():  # each model gets its own mean of each steering's set; None leaves a member as it is
        ran = for_model(compose(specs), role, per_steering).steerings
        assert ran[0].reference is own[0][role] and ran[1].reference is None and ran[2].reference is own[1][role]
    decoding = DecodingSettings(max_new_tokens=5)
    by_list = compare(pair.models(), pair.tokenizer, ["the cat is"], compose(specs), decoding=decoding, chat=False,
                      references=per_steering).table
    for role, model in pair.models().items():  # the same tokens as the members carrying their references themselves
        placed = Composition((replace(specs[0], reference=own[0][role]), specs[1],
                              replace(specs[2], reference=own[1][role])))
        alone = compare({role: model}, pair.tokenizer, ["the cat is"], placed, decoding=decoding, chat=False).table
        assert alone.text.tolist() == by_list[by_list.model == role].text.tolist()
    with pytest.raises(InvalidInputError, match="one set of reference means per steering \\(3\\), not 2"):
        compare(pair.models(), pair.tokenizer, ["the cat is"], compose(specs), decoding=decoding, chat=False,
                references=own)


def test_a_bad_member_is_named_by_its_place_before_any_hook(pair):
    view = ModelView.of(pair.base)
    g = torch.Generator().manual_seed(6)
    good = SteeringSpec(_direction(view.n_layers, view.d_model, "a", g), "add", (1,), 0.1)
    wrong_shape = SteeringSpec(_direction(view.n_layers + 2, view.d_model, "b", g), "add", (1,), 0.1)
    with pytest.raises(IncompatibleDirectionError, match="Steering 2: Direction from tiny has 5 layers"):
        with Composition((good, wrong_shape)).applied(pair.base):
            pytest.fail("a hook was placed")
    assert not [m for m in pair.base.modules() if m._forward_hooks or m._forward_pre_hooks]


def test_bad_compositions_and_rules_are_refused_in_one_sentence():
    with pytest.raises(InvalidInputError, match="at least one steering"):
        Composition(())
    with pytest.raises(SettingError, match="Unknown position mode 'middle'"):
        PositionRule("middle")
    with pytest.raises(SettingError, match="at least one token position"):
        PositionRule("tokens")
    with pytest.raises(SettingError, match="whole number"):
        PositionRule("from", start=1.5)
    with pytest.raises(SettingError, match="whole numbers separated by commas"):
        parse_offsets("-1, x")
    assert parse_offsets("-1, 0 2") == (-1, 0, 2)
    assert parse_alphas("0, 0.05; 0.1") == [0.0, 0.05, 0.1]
    with pytest.raises(SettingError, match="finite"):
        parse_alphas("0, nan")
    with pytest.raises(SettingError, match="separated by commas"):
        parse_alphas("0, a")


@pytest.mark.parametrize("rule", [r for r, _ in RULES], ids=[r.label() for r, _ in RULES])
def test_a_rule_survives_its_json_and_the_spec_it_makes(rule):
    assert PositionRule.from_json(rule.to_json()) == rule
    assert PositionRule.of(rule.positions()) == rule
    direction = Direction(torch.ones(3, 4), DirectionInfo("m", "d", "h"), torch.ones(3))
    assert rule.label() in describe(SteeringSpec(direction, "add", (1,), 0.2, positions=rule.positions()))
