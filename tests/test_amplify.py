import pytest
import torch
import transformers
from numeric import forward_tolerance
from tiny import CONFIGS, tiny_model, tiny_tokenizer

from steering.amplify import amplification_rates, amplified_generate
from steering.errors import InvalidInputError, SettingError
from steering.generation import DecodingSettings, format_prompts, generate

PROMPTS = ["the cat is", "w5 w6 w7 w8 w9", "a dog"]


def _pair(model_type="gemma3_text"):
    return tiny_model(model_type, seed=1), tiny_model(model_type, seed=2), tiny_tokenizer()


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt2"])
def test_alpha_zero_is_bs_own_greedy_generation(model_type):
    a, b, tok = _pair(model_type)
    texts = format_prompts(tok, PROMPTS)
    decoding = DecodingSettings(max_new_tokens=10)  # past the tiny Gemma's sliding window of 4
    assert amplified_generate(a, b, tok, texts, 0.0, decoding=decoding) == generate(b, tok, texts, decoding=decoding)


@torch.no_grad()
@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_each_token_is_the_argmax_of_the_stated_combination(alpha):
    """A reference without cache or batch: both models on the whole sequence so far, logits_B + alpha (logits_B -
    logits_A) by hand, its argmax appended; the amplified reply follows it, parting only at a near tie."""
    a, b, tok = _pair()
    text = format_prompts(tok, PROMPTS[:1])[0]
    reply = amplified_generate(a, b, tok, [text], alpha, decoding=DecodingSettings(max_new_tokens=6))[0]
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    ours = tok(reply, add_special_tokens=False).input_ids
    for step, token in enumerate(ours):
        la, lb = a(ids).logits[0, -1].float(), b(ids).logits[0, -1].float()
        mixed = lb + alpha * (lb - la)
        # each model's logits are trusted to its forward tolerance; the mix weighs B's by 1 + alpha, A's by alpha
        tol = (1 + alpha) * forward_tolerance(b, float(lb.abs().max())) + alpha * forward_tolerance(
            a, float(la.abs().max()))
        best = int(mixed.argmax())
        assert token == best or float(mixed[best] - mixed[token]) <= 2 * tol, (
            f"step {step}: token {token} is {float(mixed[best] - mixed[token]):.3g} below the argmax {best}")
        if token != best:
            break  # parted at a near tie: the rest follows another path
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    assert ours, "the amplified reply is empty"


def test_one_alpha_per_row_equals_each_alpha_alone():
    a, b, tok = _pair("llama")
    texts = format_prompts(tok, PROMPTS[:2])
    decoding = DecodingSettings(max_new_tokens=6)
    together = amplified_generate(a, b, tok, texts * 2, [0.0, 0.0, 2.0, 2.0], decoding=decoding)
    alone = amplified_generate(a, b, tok, texts, 2.0, decoding=decoding)
    assert together[:2] == generate(b, tok, texts, decoding=decoding)
    assert together[2:] == alone


def test_rates_count_the_judges_hits_per_alpha():
    a, b, tok = _pair("llama")
    texts = format_prompts(tok, PROMPTS)
    rates, replies = amplification_rates(a, b, tok, texts, [0.0, 4.0], judge=lambda r: "w1" in r.split(),
                                         decoding=DecodingSettings(max_new_tokens=5), batch_rows=4)
    assert list(rates.alpha) == [0.0, 4.0] and list(rates.n) == [3, 3]
    for row in rates.itertuples():
        hits = replies[replies.alpha == row.alpha].reply.map(lambda r: "w1" in r.split())
        assert row.hits == hits.sum() and row.rate == pytest.approx(hits.mean())
    assert list(replies.reply[:3]) == generate(b, tok, texts, decoding=DecodingSettings(max_new_tokens=5))


def test_sampling_is_seeded():
    a, b, tok = _pair("llama")
    texts = format_prompts(tok, PROMPTS[:2])
    decoding = DecodingSettings(max_new_tokens=5, greedy=False, seed=3, temperature=0.9, top_p=0.9)
    assert amplified_generate(a, b, tok, texts, 1.0, decoding=decoding) == \
        amplified_generate(a, b, tok, texts, 1.0, decoding=decoding)


@pytest.mark.parametrize("alpha, prompts, error, words", [
    (-1.0, PROMPTS, SettingError, "from 0 to"),
    (float("nan"), PROMPTS, SettingError, "finite"),
    ("two", PROMPTS, SettingError, "number"),
    ([1.0, 2.0], PROMPTS, InvalidInputError, "2 alphas for 3 prompts"),
    (1.0, [], InvalidInputError, "at least one prompt"),
])
def test_bad_inputs_are_named(alpha, prompts, error, words):
    a, b, tok = _pair("llama")
    with pytest.raises(error, match=words):
        amplified_generate(a, b, tok, format_prompts(tok, prompts) if prompts else [], alpha)


def test_two_vocabularies_are_refused():
    a, b, tok = _pair("llama")
    config = CONFIGS["llama"]()
    config.vocab_size += 7
    other = transformers.AutoModelForCausalLM.from_config(config).eval()
    with pytest.raises(InvalidInputError, match="one vocabulary"):
        amplified_generate(other, b, tok, format_prompts(tok, PROMPTS[:1]), 1.0)


@pytest.mark.parametrize("argv, words", [
    (["--alphas", "1,-2"], "from 0 to 100"),
    (["--a", "sft", "--b", "nope"], "No stage 'nope'"),
    (["--prompts", "/no/such/file.txt"], "No prompt set or file"),
    (["--n", "-1"], "--n must be at least 0"),
    (["--max-new-tokens", "0"], "max new tokens"),
])
def test_the_cli_names_a_bad_setting_in_one_line_before_loading(argv, words, capsys, monkeypatch):
    from analyses import amplify as amplify_cli
    from steering import pairs

    monkeypatch.setattr(pairs, "load_pair", lambda *a, **k: pytest.fail("loaded a pair for a bad setting"))
    assert amplify_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]


def test_the_cli_reads_a_prompt_file(tmp_path):
    from analyses.amplify import prompt_set

    path = tmp_path / "p.txt"
    path.write_text("How do I kill a process?\n\nHow do I shoot a photo?\n", encoding="utf-8")
    assert prompt_set(str(path)) == ["How do I kill a process?", "How do I shoot a photo?"]
    assert len(prompt_set("dpo-risky")) > 0 and len(prompt_set("risky")) > 0
