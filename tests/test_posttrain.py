"""The post-training recipe on a tiny model: the loss falls, checkpoints are written, the adapter loads and bites."""
import json

import torch
from peft import PeftModel
from tiny import tiny_model, tiny_tokenizer

from steering.judging import is_refusal
from steering.architectures import architecture_for
from steering.posttrain.train import IGNORE, TrainConfig, encode_example, lora_targets, train, write_log

PAIRS = [("the cat is", "true"), ("the dog is", "false"), ("w1 w2", "w3 w4"), ("w5", "w6 w7 w8"),
         ("a cat", "w9 w10"), ("a dog", "w11"), ("w12 w13", "true false"), ("w14", "w15 w16")]


def _examples(tok):
    return [encode_example(tok, p, r, "<end_of_turn>", 64) for p, r in PAIRS]


def test_loss_is_on_the_answer_and_its_end_of_turn_only():
    tok = tiny_tokenizer()
    ex = encode_example(tok, "the cat is", "true", "<end_of_turn>", 64)
    answer = [t for t, label in zip(ex.input_ids, ex.labels) if label != IGNORE]
    assert tok.convert_ids_to_tokens(answer) == ["true", "<end_of_turn>"]


def test_a_few_steps_lower_the_loss_and_the_adapter_loads_back(tmp_path):
    tok = tiny_tokenizer()
    examples = _examples(tok)
    config = TrainConfig(steps=30, batch_size=4, learning_rate=5e-3, warmup_steps=2, lora_rank=4,
                         checkpoint_fractions=(0.1, 0.5))
    model, result = train(tiny_model("llama"), examples, examples, config, pad_id=0, out_dir=tmp_path)
    losses = [e["loss"] for e in result.log]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])
    assert sorted(result.checkpoints) == [3, 15, 30]
    assert (tmp_path / "checkpoints" / "step3" / "adapter_model.safetensors").is_file()
    assert result.log[-1]["val_loss"] < result.log[2]["val_loss"]
    write_log(result, config, tmp_path / "training_log")  # the adapted layers are the architecture's, on record
    logged = json.loads((tmp_path / "training_log.json").read_text())["config"]["target_modules"]
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["target_modules"]
    assert logged == list(architecture_for("llama").lora_targets) and set(adapter) == set(logged)

    fresh = tiny_model("llama")
    ids = torch.tensor([examples[0].input_ids])
    before = fresh(ids).logits
    merged = PeftModel.from_pretrained(tiny_model("llama"), tmp_path / "adapter").merge_and_unload()
    after = merged(ids).logits
    assert not torch.allclose(before, after, atol=1e-3)
    torch.testing.assert_close(after, model(ids).logits, atol=2e-2, rtol=1e-2)  # saved in fp16


def test_refusal_judge_reads_the_start_of_a_reply():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("  I cannot assist with making weapons.")
    assert is_refusal("I can’t do that.")  # curly apostrophe
    assert not is_refusal("Paris is in France.")
    assert not is_refusal("Sure! Here is how to kill a Python process: use kill PID. I'm sorry it hung.")


def test_answer_loss_equals_the_models_own_loss():
    from steering.posttrain.train import answer_loss, collate

    tok = tiny_tokenizer()
    for model_type in ("gemma2", "llama"):  # gemma2 soft-caps its logits
        model = tiny_model(model_type)
        batch = collate(_examples(tok)[:4], pad_id=0)
        mine, n = answer_loss(model, batch)
        torch.testing.assert_close(mine, model(**batch).loss)
        assert n == int((batch["labels"] != IGNORE).sum())


def test_lora_targets_come_from_the_architecture_unless_the_config_names_them():
    gpt2 = tiny_model("gpt2")
    assert lora_targets(gpt2, TrainConfig()) == architecture_for("gpt2").lora_targets
    assert lora_targets(gpt2, TrainConfig(target_modules=("c_fc",))) == ("c_fc",)
    assert architecture_for("gpt2").lora_targets != architecture_for("llama").lora_targets
