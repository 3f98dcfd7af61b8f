"""The affine ablation calibrated (calibrate_ablation): a setting (layer, beta) is the ablation with strength beta
at every layer from `layer` on, and the sweep's numbers are those of each setting run alone with affine_ablate."""
from __future__ import annotations

import pytest
import torch
from numeric import assert_close, assert_replies_agree, logprob_tolerance
from test_calibration import NEUTRAL, _behaviour
from tiny import tiny_model, tiny_tokenizer

from steering.calibration import DamageBudget, calibrate_ablation
from steering.calibration_passes import kl_from
from steering.errors import InvalidInputError
from steering.generation import DecodingSettings, format_prompts
from steering.interventions import affine_ablate
from steering.model_view import ModelView
from steering.tokens import encode


def _setup(arch: str = "gemma3_text"):
    model, tok = tiny_model(arch), tiny_tokenizer()
    view = ModelView.of(model)
    vector = torch.randn(view.d_model, generator=torch.Generator().manual_seed(3))
    reference = {layer: 0.5 - 0.25 * layer for layer in range(view.n_layers)}
    return model, tok, view, vector, reference


@torch.no_grad()
def _alone(model, tok, view, vector, reference, texts, layer, beta):
    """[rows, vocab] next-token log-probs after each text, one text at a time, under the ablation from `layer`
    on with strength beta (None: no ablation), in a full pass (nothing resumed)."""
    out = []
    for text in texts:
        batch = encode(tok, [text])
        if beta is None:
            hidden = view.decoder_stack(**batch).last_hidden_state[:, -1]
        else:
            with affine_ablate(model, vector, reference, layers=range(layer, view.n_layers), strength=beta):
                hidden = view.decoder_stack(**batch).last_hidden_state[:, -1]
        out.append(torch.log_softmax(view.logits(hidden).float(), dim=-1))
    return torch.cat(out)


@pytest.mark.parametrize("arch", ["gemma3_text", "llama"])
def test_every_setting_is_the_ablation_from_its_layer_with_its_strength_run_alone(arch):
    model, tok, view, vector, reference = _setup(arch)
    behaviour = _behaviour(tok)
    prompts = format_prompts(tok, ["the cat is", "w5 w6 w7 w8 w9"])
    found = calibrate_ablation(model, tok, vector, reference, behaviour, prompts, NEUTRAL, layers=[0, 2],
                               strengths=[0.5, 1.0], aim="lower", max_new_tokens=5, generate="all",
                               budget=DamageBudget(max_kl=10.0))
    assert found.steering == "affine" and [(s.layer, s.alpha) for s in found.settings] == [
        (0, 0.5), (0, 1.0), (2, 0.5), (2, 1.0)]
    plain = _alone(model, tok, view, vector, reference, prompts, 0, None)
    plain_neutral = _alone(model, tok, view, vector, reference, NEUTRAL, 0, None)
    base = float(behaviour.score(plain).mean())
    for s in found.settings:
        what = f"from layer {s.layer}, strength {s.alpha}"
        steered = _alone(model, tok, view, vector, reference, prompts, s.layer, s.alpha)
        steered_neutral = _alone(model, tok, view, vector, reference, NEUTRAL, s.layer, s.alpha)
        dz = max(logprob_tolerance(model, t) for t in (plain, steered, plain_neutral, steered_neutral))
        score = float(behaviour.score(steered).mean())
        # a log-probability moves by at most 2 dz, so a difference of two log-sum-exps by 4 dz (8 for the effect)
        assert_close(s.score, score, 4 * dz, f"{what}: score")
        assert_close(s.effect, base - score, 8 * dz, f"{what}: effect (aim lower)")
        kl = float(kl_from(plain_neutral, steered_neutral).mean())
        spread = float((plain_neutral.exp() * (plain_neutral - steered_neutral).abs()).sum(-1).max())
        assert_close(s.kl, kl, 2 * dz * spread + 4 * dz, f"{what}: KL")

        def ablated(s=s):
            return affine_ablate(model, vector, reference, layers=range(s.layer, view.n_layers), strength=s.alpha)

        assert_replies_agree(model, tok, prompts[:1], [s.example], [_reply(model, tok, prompts[0], ablated)],
                             intervention=ablated, max_new_tokens=5)


@torch.no_grad()
def _reply(model, tok, prompt, intervention) -> str:
    batch = encode(tok, [prompt])
    with intervention():
        out = model.generate(**batch, **DecodingSettings(max_new_tokens=5).generate_kwargs())
    return tok.decode(out[0, batch.input_ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("change, words", [
    (dict(vector=torch.ones(5)), "one vector of"),
    (dict(vector=torch.full((32,), float("nan"))), "finite and not zero"),
    (dict(vector=torch.zeros(32)), "finite and not zero"),
    (dict(reference={0: 1.0}), "reference value for every layer"),
    (dict(reference={0: 1.0, 1: float("inf"), 2: 0.0}), "reference value for every layer"),
    (dict(strengths=[0.0]), "Leave alpha 0 out"),
])
def test_bad_ablation_inputs_are_named_before_any_work(change, words):
    model, tok, view, vector, reference = _setup("llama")
    args = dict(vector=vector, reference=reference, strengths=[1.0]) | change
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(InvalidInputError, match=words):
        calibrate_ablation(model, tok, args["vector"], args["reference"], _behaviour(tok),
                           format_prompts(tok, ["the cat"]), NEUTRAL, layers=[0], strengths=args["strengths"])
    assert not calls
