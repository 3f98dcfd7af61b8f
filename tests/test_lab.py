"""The lab on a tiny pair with an SFT checkpoint and a DPO checkpoint (random LoRA adapters): every stage, study and
headline metric lands in the tidy table on the right step axis, transfer along the road covers every stage, a
rerun finds everything in the store, and a bad stage name lists the stages there are."""
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from test_study_cli_cache import small_args
from tiny import save_tiny_pair, tiny_model

import steering.registry as registry
from analyses import STUDY_NAMES, find_study
from analyses.cli import config_from_args, study_parser
from analyses.lab import LAB, Config, run, split_metric
from analyses.store import ResultStore, run_cached
from steering import load_pair
from steering.errors import AdapterMissingError
from steering.posttrain.train import save_adapter
from steering.stages import pick_stages, stages, training_losses

STAGES = ["base", "step2", "sft", "dpo-step1", "dpo"]


def _adapter(folder, seed: int) -> None:
    torch.manual_seed(seed)
    model = get_peft_model(tiny_model("gemma3_text", seed=1), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                         init_lora_weights=False))
    save_adapter(model, folder, "float16", base_name="tiny base")


def _log(folder, steps: int, val_steps: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training_log.json").write_text(json.dumps({"config": {"steps": steps}}))
    rows = [f"{s},{1.0 / s:.3f},{0.9 / s:.3f}" if s in val_steps else f"{s},{1.0 / s:.3f}," for s in range(1, steps + 1)]
    (folder / "training_log.csv").write_text("step,loss,val_loss\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def tiny_road(tmp_path_factory):
    """A pair 'tiny' whose road is base -> step2 -> sft (4 steps) -> dpo-step1 -> dpo (2 DPO steps)."""
    root = tmp_path_factory.mktemp("lab")
    base_dir, _ = save_tiny_pair(root / "pair")
    _adapter(root / "sft" / "adapter", 1)
    _adapter(root / "sft" / "checkpoints" / "step2", 2)
    _adapter(root / "dpo" / "adapter", 3)
    _adapter(root / "dpo" / "checkpoints" / "step1", 4)
    _log(root / "sft", 4, [2, 4])
    _log(root / "dpo", 2, [1, 2])
    raw = {"tiny": {"base": base_dir, "post": {"base": base_dir, "adapter": str(root / "sft" / "adapter")},
                    "checkpoints": str(root / "sft" / "checkpoints"), "dpo": str(root / "dpo"),
                    "architecture": "gemma3_text", "end_of_turn": "<end_of_turn>"}}
    patch = pytest.MonkeyPatch()
    patch.setenv("PLAYGROUND_CACHE", str(root / "cache"))
    patch.setattr(registry, "_raw_registry", lambda: raw)
    try:
        yield root
    finally:
        patch.undo()


def _small(tmp_path):
    """Each study's few-second settings and tiny-vocabulary data (those of the CLI cache test)."""
    settings, data = {}, {}
    for name in STUDY_NAMES:
        study = find_study(name)
        args = study_parser(study).parse_args(["--out", str(tmp_path), *small_args(name, tmp_path)])
        settings[name] = config_from_args(args, study.Config)
        data[name] = study.cli.data(args) if study.cli.data is not None else None
    return settings, data


def test_the_stages_of_a_road_and_their_losses_on_one_step_axis(tiny_road):
    assert [(s.name, s.step, s.phase, s.pair) for s in stages("tiny")] == [
        ("base", 0, "base", "tiny@base"), ("step2", 2, "sft", "tiny@step2"), ("sft", 4, "sft", "tiny@sft"),
        ("dpo-step1", 5, "dpo", "tiny@dpo-step1"), ("dpo", 6, "dpo", "tiny@dpo")]
    losses = training_losses("tiny")
    assert [r["step"] for r in losses if r["split"] == "validation"] == [2, 4, 5, 6]
    assert {r["metric"] for r in losses if r["phase"] == "dpo"} == {"DPO loss"}
    with pytest.raises(AdapterMissingError, match=r"No stage 'step9' of pair 'tiny'; available: base, step2, sft, "
                                                  r"dpo-step1, dpo\."):
        pick_stages("tiny", ["sft", "step9"])


def test_the_lab_fills_the_tidy_table_for_every_stage_study_and_metric(tiny_road, tmp_path):
    settings, data = _small(tmp_path)
    pair = load_pair("tiny", base_only=True)
    store = ResultStore(tmp_path / "store")
    messages = []
    result = run(pair, Config(), store=store, settings=settings, study_data=data,
                 progress=lambda f, m: messages.append((f, m)))
    table = result.timeline
    assert list(table.columns) == ["stage", "step", "phase", "study", "metric", "model", "value"]
    assert list(dict.fromkeys(table["stage"])) == STAGES
    assert dict(zip(table["stage"], table["step"])) == {"base": 0, "step2": 2, "sft": 4, "dpo-step1": 5, "dpo": 6}
    for stage in STAGES:  # every study's every numeric headline number at every stage
        for name in STUDY_NAMES:
            stored = run_cached(find_study(name), load_pair(f"tiny@{stage}"), settings[name], data=data[name],
                                store=store, notice=pytest.fail)  # found in the store: the lab stored it
            numbers = {split_metric(k) for k, v in find_study(name).headline(stored.result).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            here = table[(table.stage == stage) & (table.study == name)]
            assert numbers <= set(zip(here["metric"], here["model"])), (stage, name)
    cosines = table[table.metric == "direction_cosine_with_final"].set_index("stage")["value"]
    assert cosines["dpo"] == pytest.approx(1.0, abs=1e-5) and len(cosines) == len(STAGES)
    base_cos = table[table.metric == "direction_cosine_with_base"].set_index("stage")["value"]
    assert base_cos["base"] == pytest.approx(1.0, abs=1e-5)  # the base stage pairs the base with itself
    assert set(result.transfer["stage"]) == set(STAGES)
    assert set(zip(result.transfer.direction_from, result.transfer.prompts)) == {
        (d, p) for d in ("none", "base", "final") for p in ("harmful", "harmless")}
    assert result.transfer["refusal_rate"].between(0, 1).all()
    assert sorted(result.losses["step"].unique())[-1] == 6
    back = [(a, b) for a, b in zip(messages, messages[1:]) if b[0] < a[0] - 1e-9]
    assert 0.99 <= messages[-1][0] <= 1.0 and not back, back[:3]
    assert any("dpo-step1 (dpo, step 5)" in m for _, m in messages)
    charts = LAB.charts(result)
    assert {"losses", "transfer", *(f"timeline_{n}" for n in STUDY_NAMES)} <= set(charts)
    for chart in charts.values():
        chart.to_dict()  # a valid Vega-Lite spec
    # one stage and one study again: nothing is computed, the numbers are the full run's
    again = run(pair, Config(stages=("sft",), studies=("confidence",), transfer=False), store=store,
                settings=settings, study_data=data)
    assert set(again.runs["seconds"]) and again.runs["seconds"].max() < 5
    full = table[(table.stage == "sft") & (table.study == "confidence")].reset_index(drop=True)
    pd_again = again.timeline[again.timeline.study == "confidence"].reset_index(drop=True)
    assert pd_again.equals(full)


def test_the_lab_is_keyed_by_the_base_alone(tiny_road):
    """The page (which holds the whole pair) and the CLI (which loads the base alone) find the same lab result."""
    from analyses.store import pair_for, result_key

    whole, alone = load_pair("tiny"), load_pair("tiny", base_only=True)
    data = LAB.default_data(alone, Config())
    keys = {result_key(LAB, pair_for(LAB, p), Config(), LAB.data_hash(data)) for p in (whole, alone)}
    assert len(keys) == 1
    assert pair_for(LAB, whole).post is None and pair_for(find_study("refusal"), whole).post is not None


def test_any_two_stages_form_a_pair_the_first_as_the_base(tiny_road):
    ids = torch.tensor([[2, 5, 7, 9]])
    between, early, late = load_pair("tiny@step2..dpo"), load_pair("tiny@step2"), load_pair("tiny@dpo")
    torch.testing.assert_close(between.base(ids).logits, early.post(ids).logits)
    torch.testing.assert_close(between.post(ids).logits, late.post(ids).logits)
    with pytest.raises(AdapterMissingError, match=r"No stage 'step7'.*available: base, step2, sft, dpo-step1, dpo"):
        load_pair("tiny@step7..dpo")

