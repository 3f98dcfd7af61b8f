"""Few-shot P(TRUE) - P(FALSE) scoring, checked against the model's own full forward pass."""
import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from analyses.statements import statement_set
from analyses.truth_score import (answer_token_ids, few_shot_prefix, shot_facts, statement_offsets,
                                  truth_prompts, truth_scores)
from steering.errors import InvalidInputError
from steering.interventions import add
from steering.tokens import encode

ANSWERS = ("true", "false")  # the tiny word-level vocabulary has these in lower case


def test_few_shot_prefix_is_balanced_and_from_train() -> None:
    frame = statement_set("cities")
    prefix = few_shot_prefix(frame, n_shots=6)
    lines = prefix.strip().split("\n")
    assert len(lines) == 6 and sum(ln.endswith(" TRUE") for ln in lines) == 3
    used = shot_facts(prefix, frame)
    assert len(used) == 6 and set(frame[frame.fact.isin(used)].split) == {"train"}


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_scores_equal_the_full_forward_pass(model_type: str) -> None:
    model, tok = tiny_model(model_type), tiny_tokenizer()
    prompts = truth_prompts(["the cat is a dog .", "w1 w2 ."], "the dog is a cat . true\n")
    scores = truth_scores(model, tok, prompts, answers=ANSWERS, batch_size=1)
    batch = encode(tok, prompts)
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits[:, -1].float(), dim=-1)
    t, f = answer_token_ids(tok, ANSWERS)
    torch.testing.assert_close(scores, probs[:, t] - probs[:, f], atol=1e-5, rtol=1e-4)


def test_steer_wraps_only_its_rows() -> None:
    model, tok = tiny_model("llama"), tiny_tokenizer()
    prompts = truth_prompts(["the cat is a dog .", "w1 w2 .", "w3 a dog ."])
    plain = truth_scores(model, tok, prompts, answers=ANSWERS, batch_size=2)
    push = torch.randn(32) * 20

    def steer(start: int, end: int):
        return add(model, {1: push}, alpha=[1.0 if i == 2 else 0.0 for i in range(start, end)])

    steered = truth_scores(model, tok, prompts, answers=ANSWERS, batch_size=2, steer=steer)
    torch.testing.assert_close(steered[:2], plain[:2])
    assert not torch.isclose(steered[2], plain[2])


def test_offsets_point_at_the_statement_end() -> None:
    tok = tiny_tokenizer()
    last, period = statement_offsets(tok)
    ids = tok(truth_prompts(["the cat is a dog ."])[0], add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens([ids[period]]) == ["."] and period == last + 1


def test_answers_missing_from_the_vocabulary_are_named() -> None:
    with pytest.raises(InvalidInputError, match="no token for the answer 'TRUE'"):
        answer_token_ids(tiny_tokenizer())
