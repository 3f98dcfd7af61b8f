"""The cross-machine comparison helpers (tests/numeric.py) accept near ties and refuse real differences."""
import pytest
import torch
from numeric import (EPS, assert_argmax_agrees, assert_top_k_agree, forward_tolerance, greedy_parting, rank_slack,
                     sum_tolerance)
from tiny import tiny_model, tiny_tokenizer

from steering.generation import DecodingSettings, generate


def test_tolerances_grow_with_the_sum_and_the_depth():
    assert sum_tolerance(100, 2.0) == pytest.approx(10 * EPS * 2.0)
    assert sum_tolerance(100, 2.0, worst=True) == pytest.approx(100 * EPS * 2.0)
    model = tiny_model("llama")  # 3 blocks, MLP width 64
    assert forward_tolerance(model, 1.0) == pytest.approx(2 * 3 * 8 * EPS)
    assert forward_tolerance(model, 1.0, blocks=1) == pytest.approx(forward_tolerance(model, 1.0) / 3)


def test_top_k_lists_agree_up_to_near_ties_only():
    assert_top_k_agree([1, 2, 3], [0.5, 0.3, 0.3], [1, 3, 2], [0.5, 0.3, 0.3], tol=1e-6)  # a tie swapped
    assert_top_k_agree([1, 2, 3], [0.5, 0.3, 0.2], [1, 2, 4], [0.5, 0.3, 0.2], tol=1e-6)  # fell off in a tie
    with pytest.raises(AssertionError):  # a real swap: 0.4 against 0.3
        assert_top_k_agree([1, 2, 3], [0.5, 0.4, 0.3], [1, 3, 2], [0.5, 0.4, 0.3], tol=1e-6)
    with pytest.raises(AssertionError):  # the scores by rank differ
        assert_top_k_agree([1, 2], [0.5, 0.4], [1, 2], [0.5, 0.3], tol=1e-6)


def test_argmax_agrees_up_to_a_near_tie_and_ranks_move_by_the_ties_around():
    assert_argmax_agrees([0.1, 0.5, 0.5 - 1e-9], 2, tol=1e-6)
    with pytest.raises(AssertionError):
        assert_argmax_agrees([0.1, 0.5, 0.4], 2, tol=1e-6)
    scores = torch.tensor([3.0, 2.0, 2.0 + 1e-7, 1.0])
    assert rank_slack(scores, 1, 1e-6) == 1 and rank_slack(scores, 0, 1e-6) == 0


def test_a_reply_parts_from_the_greedy_one_only_at_a_near_tie():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    prompt = "<bos>the cat is"
    mine = generate(model, tok, [prompt], decoding=DecodingSettings(max_new_tokens=4))[0]
    assert greedy_parting(model, tok, prompt, mine, max_new_tokens=4) is None
    with torch.no_grad():
        logits = model(**tok([prompt], return_tensors="pt", add_special_tokens=False)).logits[0, -1]
    worst = tok.convert_ids_to_tokens(int(logits.argmin()))  # the least likely first token: far from a tie
    step, gap, dz = greedy_parting(model, tok, prompt, f"{worst} {mine}", max_new_tokens=4)
    assert step == 0 and gap > 2 * dz  # not a near tie: an assertion would refuse it
