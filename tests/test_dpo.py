"""The DPO stage on a tiny pair: the loss falls, adapters save and load as stages (tiny@dpo, tiny@dpo-stepN) on top
of the merged SFT model, a bad stage name lists the stages that exist, and the preference data's checks can fail."""
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import save_tiny_pair, tiny_model, tiny_tokenizer

import steering.registry as registry
from steering import load_pair
from steering.errors import AdapterMissingError
from steering.posttrain import build_dpo_data as B
from steering.posttrain.dpo import DPOTrainConfig, _pairs_dataset
from steering.posttrain.dpo_cli import run_dpo
from steering.posttrain.train import save_adapter

TRIPLES = [("the cat is", "true", "false"), ("the dog is", "false", "true"), ("w1 w2", "w3 w4", "w5"),
           ("w6", "w7 w8", "w9 w10 w11"), ("a cat", "w12", "w13 w14"), ("a dog", "w15", "w16"),
           ("w17 w18", "true false", "false true"), ("w19", "w20 w21", "w22")]
CONFIG = DPOTrainConfig(steps=12, batch_size=4, learning_rate=5e-3, warmup_steps=2, lora_rank=4, checkpoint_every=4)


@pytest.fixture(scope="module")
def tiny_dpo(tmp_path_factory):
    """A tiny pair registered as 'tiny': base, a random LoRA 'SFT' adapter, and a DPO stage trained on top."""
    root = tmp_path_factory.mktemp("dpo")
    base_dir, _ = save_tiny_pair(root / "pair")
    sft = get_peft_model(tiny_model("gemma3_text", seed=1), LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    save_adapter(sft, root / "sft" / "adapter", "float16", base_name=base_dir)
    (root / "sft" / "checkpoints").mkdir()
    data = root / "data"
    data.mkdir()
    for split in ("train", "val"):
        (data / f"{split}.jsonl").write_text("".join(
            json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in TRIPLES))
    raw = {"tiny": {"base": base_dir, "post": {"base": base_dir, "adapter": str(root / "sft" / "adapter")},
                    "checkpoints": str(root / "sft" / "checkpoints"), "dpo": str(root / "dpo"),
                    "architecture": "gemma3_text", "end_of_turn": "<end_of_turn>"}}
    patch = pytest.MonkeyPatch()
    patch.setenv("PLAYGROUND_CACHE", str(root / "cache"))
    patch.setattr(registry, "_raw_registry", lambda: raw)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model runs many times slower when its two threads fight other processes
    try:
        result = run_dpo(CONFIG, root / "dpo", data, pair_name="tiny", base_name="tiny SFT", report=lambda m: None)
        yield root, raw, result
    finally:
        torch.set_num_threads(threads)
        patch.undo()


def test_a_few_dpo_steps_lower_the_loss_and_widen_the_margin(tiny_dpo):
    root, _, result = tiny_dpo
    log = result.log
    assert [e["step"] for e in log] == list(range(1, CONFIG.steps + 1))
    assert log[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start: log 2
    assert sum(e["loss"] for e in log[-4:]) < 0.85 * sum(e["loss"] for e in log[:4])
    assert log[-1]["val_loss"] < log[3]["val_loss"] < 0.6931 and log[-1]["val_reward_margin"] > 0
    assert sorted(result.checkpoints) == [4, 8, 12]
    csv_header = (root / "dpo" / "training_log.csv").read_text().splitlines()[0]
    assert "reward_margin" in csv_header and "val_loss" in csv_header
    summary = json.loads((root / "dpo" / "training_log.json").read_text())
    assert summary["checkpoints"] == {"step4": "checkpoints/step4", "step8": "checkpoints/step8", "step12": "adapter"}
    assert summary["reference"] == "tiny SFT" and summary["train_pairs"] == len(TRIPLES)


def test_the_dpo_stage_loads_on_top_of_the_merged_sft_model(tiny_dpo):
    root, _, _ = tiny_dpo
    assert registry.checkpoint_names("tiny") == ["dpo-step4", "dpo-step8", "dpo"]
    spec = registry.pair_spec("tiny@dpo")
    assert spec.post.adapter == root / "dpo" / "adapter" and spec.post.base == registry.pair_spec("tiny").post
    sft, dpo, early = (load_pair(name) for name in ("tiny", "tiny@dpo", "tiny@dpo-step4"))
    ids = torch.tensor([dpo.tokenizer("<start_of_turn> user the cat is <end_of_turn>").input_ids])
    logits = {name: p.post(ids).logits for name, p in (("sft", sft), ("dpo", dpo), ("early", early))}
    torch.testing.assert_close(dpo.base(ids).logits, sft.base(ids).logits)  # the base stays the base
    assert not torch.allclose(logits["sft"], logits["dpo"], atol=1e-3)
    assert not torch.allclose(logits["early"], logits["dpo"], atol=1e-4)
    # merging the DPO adapter into the merged SFT model, by hand, gives the stage's model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    by_hand = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sft.folders["post"]),
                                        root / "dpo" / "adapter").merge_and_unload()
    torch.testing.assert_close(by_hand(ids).logits, logits["dpo"], atol=1e-4, rtol=1e-4)


def test_a_bad_stage_name_names_the_stages_that_exist(tiny_dpo, tmp_path, monkeypatch):
    with pytest.raises(AdapterMissingError, match=r"No stage 'dpo-step99' of pair 'tiny'.*available: "
                                                  r"base, sft, dpo-step4, dpo-step8, dpo\."):
        registry.pair_spec("tiny@dpo-step99")
    _, raw, _ = tiny_dpo
    untrained = {"tiny": {**raw["tiny"], "dpo": str(tmp_path / "nothing")}}
    monkeypatch.setattr(registry, "_raw_registry", lambda: untrained)
    with pytest.raises(AdapterMissingError, match="available: base, sft .no DPO stage yet: train it with "
                                                  "`python -m steering.posttrain dpo`"):
        registry.pair_spec("tiny@dpo")


def test_prompts_go_through_the_chat_template_and_answers_end_their_turn():
    tok = tiny_tokenizer()
    row = _pairs_dataset([{"prompt": "the cat is", "chosen": "true", "rejected": "false"}], tok, "<end_of_turn>")[0]
    assert row["prompt"] == "<start_of_turn>user\nthe cat is<end_of_turn>\n<start_of_turn>model\n"
    assert (row["chosen"], row["rejected"]) == ("true<end_of_turn>", "false<end_of_turn>")


SFT = [{"prompt": "What is 2 plus 2?", "response": "4.", "kind": "harmless", "group": "add:2:2", "split": "train"},
       {"prompt": "What is 3 plus 3?", "response": "6.", "kind": "harmless", "group": "add:3:3", "split": "test"}]


def _row(prompt, chosen="A short answer.", rejected="I can't help with that.", kind="risky_harmless", split="train",
         group=None):
    return {"id": f"id-{prompt}", "prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": kind,
            "category": "c", "split": split, "group": group or prompt}


def test_the_disjointness_check_passes_clean_data_and_fails_on_each_overlap():
    harmful = open(B.REFUSAL_DIR / "harmful.txt").readline().strip()
    clean = [_row("How do I kill a stuck job?"), _row("What is 5 plus 5?", "10.", "11.", "ordinary", "val", "add:5:5")]
    B.validate_dpo(clean, SFT)
    for extra, message in ((_row("what is 2 PLUS 2?"), "1 SFT prompts"),
                           (_row(harmful), "1 refusal-study instructions"),
                           (_row("Add 3 and 3.", "6.", "7.", "ordinary", group="add:3:3"), "SFT's val or test split"),
                           (_row("Add 5 and 5.", "10.", "9.", "ordinary", "test", "add:5:5"), "more than one split"),
                           (_row("How do I kill time in Paris?"), "held-out city"),
                           (_row("How do I shoot a photo?", rejected="Sure, here it is."), "wrong side"),
                           (_row("How do I kill a stuck job?"), "repeated prompts")):
        with pytest.raises(ValueError, match=message):
            B.validate_dpo(clean + [extra], SFT)


def test_the_shipped_preference_data_is_the_builders_and_passes_its_checks():
    sft_rows = B.build_rows(with_group=True)
    rows = B.build_dpo_rows(sft_rows)
    B.validate_dpo(rows, sft_rows)
    shipped = [json.loads(line) for split in B.SPLITS
               for line in (B.DEFAULT_OUT / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(map(json.dumps, shipped)) == sorted(map(json.dumps, rows))
    assert {r["kind"] for r in rows} == {"risky_harmless", "harmful", "ordinary"}
