"""The steering card on a tiny pair: it writes, reads back and reproduces the same tokens; every file is checked on
load; a card made on other models is refused naming both."""
import contextlib
import io
import json

import pytest
import torch
from tiny import save_tiny_pair

from steering import load_pair
from steering.card import FORMAT, card_for, card_zip, read_card, read_card_zip, reproduce, write_card, zip_files
from steering.composition import Composition, PositionRule
from steering.control_vector import read_control_vector
from steering.errors import BadFileError, IncompatibleCardError, InvalidInputError
from steering.generation import DecodingSettings, SteeringSpec, compare
from steering.playground import ContrastPrompts, directions_for_pair, mean_residuals

CONTRAST = ContrastPrompts("toy", ("the cat is true", "w1 w2 true"), ("the cat is false", "w1 w2 false"))
OTHER = ContrastPrompts("dogs", ("a dog is w1", "w3 dog"), ("a dog is w5 w6", "w7 w8 w9"))
PROMPTS = ["the cat is", "w1 w2 dog"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("card-pair"))
    return load_pair(base=base, post=post)


@pytest.fixture(scope="module")
def made(pair):
    """A refusal-style ablation and an addition at once, run and put on a card: (card, the run's table)."""
    directions = directions_for_pair(pair, CONTRAST)
    composition = Composition((
        SteeringSpec(directions["post"], "ablate", (0, 1), ablation="affine", positions="prompt"),
        SteeringSpec(-3.0 * directions["base"], "add", (2,), 0.8, positions=range(0, 1 << 30)),
        SteeringSpec(directions["post"], "add", (2,), 0.5),
    ))
    references = mean_residuals(pair, list(CONTRAST.negative))
    decoding = DecodingSettings(max_new_tokens=6)
    table = compare(pair.models(), pair.tokenizer, PROMPTS, composition, decoding=decoding, chat=False,
                    references=references).table
    card = card_for(pair, composition, PROMPTS, chat=False, decoding=decoding, table=table, references=references,
                    read_from=("post", "base", "post"), labels=("toy", "toy, negated", "toy"),
                    calibration={"frontier": [{"layer": 2, "alpha": 0.5, "effect": 0.3, "kl": 0.05}],
                                 "chosen": {"layer": 2, "alpha": 0.5}})
    return card, table


def same_card(a, b) -> bool:
    """Two cards hold the same steering: every field, the directions' and references' values bit for bit."""
    from dataclasses import replace

    def parts(spec):
        d = spec.direction
        return replace(spec, direction=None), d.info, d.vectors, d.resid_norms

    for x, y in zip(a.steerings, b.steerings, strict=True):
        (sx, ix, vx, nx), (sy, iy, vy, ny) = parts(x.spec), parts(y.spec)
        if (sx, ix, x.read_from, x.label) != (sy, iy, y.read_from, y.label) or not torch.equal(vx, vy) or not (
                nx is ny is None or torch.equal(nx, ny)) or not same_means(x.reference, y.reference):
            return False
    return same_means(a.references, b.references) and replace(a, steerings=()) == replace(b, steerings=())


def same_means(a, b) -> bool:
    """Two sets of reference means (role -> tensor, or None) hold the same values bit for bit."""
    return (a is b is None) or (a is not None and b is not None and a.keys() == b.keys()
                                and all(torch.equal(a[r], b[r]) for r in a))


def test_a_card_reads_back_and_reproduces_the_same_tokens(pair, made, tmp_path):
    card, table = made
    again = read_card(write_card(card, tmp_path / "card"))
    assert same_card(again, card)  # every field, the directions' values included
    for role in pair.models():
        assert torch.equal(again.references[role], card.references[role])
    reproduced = reproduce(again, pair).table
    assert reproduced.text.tolist() == table.text.tolist()  # same machine: the same tokens
    assert [r["text"] for r in again.generations] == table.text.tolist()
    assert (reproduced.text[reproduced.steered] != reproduced.text[~reproduced.steered].values).any()
    from_zip = read_card_zip(card_zip(card), "card.zip")
    assert same_card(from_zip, card) and reproduce(from_zip, pair).table.text.tolist() == table.text.tolist()


def test_the_folder_holds_the_manifest_page_vectors_and_a_script_that_reproduces(pair, made, tmp_path, monkeypatch):
    card, table = made
    folder = write_card(card, tmp_path / "card")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["project_version"] == card.project_version
    assert manifest["pair"]["fingerprints"] == {role: pair.fingerprint(role) for role in pair.models()}
    first = manifest["steerings"][0]
    assert first["provenance"]["dataset_hash"] == card.steerings[0].spec.direction.info.dataset_hash
    assert first["positions"] == {"kind": "prompt"} and manifest["steerings"][1]["positions"] == {"kind": "from",
                                                                                                   "start": 0}
    assert manifest["calibration"]["chosen"] == {"layer": 2, "alpha": 0.5}
    # a control vector only where llama.cpp reproduces the steering: an addition at every token from layer 2
    assert [s["control_vector"] for s in manifest["steerings"]] == [None, None, "control_vectors/steering-3.gguf"]
    vectors, _ = read_control_vector((folder / "control_vectors/steering-3.gguf").read_bytes())
    expected = card.steerings[2].spec.direction.steering_vectors([2], 0.5)
    assert torch.equal(vectors[2], expected[2].float())
    page = (folder / "README.md").read_text()
    for words in ("ablate (affine)", "from position 0 on", pair.fingerprint("post"), "Chosen setting",
                  table.text.iloc[1].split("\n")[0]):
        assert words in page, words
    namespace = {"__file__": str(folder / "reproduce.py")}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile((folder / "reproduce.py").read_text(), "reproduce.py", "exec"), namespace)
    assert namespace["table"].text.tolist() == table.text.tolist()


def test_a_card_of_other_models_is_refused_naming_both(pair, made, tmp_path_factory):
    card, _ = made
    base, post = save_tiny_pair(tmp_path_factory.mktemp("other-pair"))
    other = load_pair(base=base, post=post, dtype="float32")
    other_fp = other.fingerprint("post")
    from dataclasses import replace

    foreign = replace(card, fingerprints={**card.fingerprints, "post": "someone/post@elsewhere/float32/none"})
    with pytest.raises(IncompatibleCardError) as refused:
        reproduce(foreign, pair)
    message = str(refused.value)
    assert "someone/post@elsewhere/float32/none" in message and pair.fingerprint("post") in message
    assert other_fp != pair.fingerprint("post")  # two folders of the same kind are two pairs
    with pytest.raises(IncompatibleCardError, match="but the loaded pair is"):
        reproduce(card, other)


def _files(card) -> dict[str, bytes]:
    from steering.card import card_files

    return card_files(card)


def _with_manifest(files, change):
    manifest = json.loads(files["manifest.json"])
    change(manifest)
    return {**files, "manifest.json": json.dumps(manifest).encode()}


def _nan_references(files):
    from safetensors.torch import load, save

    tensors = load(files["references.safetensors"])
    tensors["post"][1, 3] = float("nan")
    changed = {**files, "references.safetensors": save(tensors)}
    from steering.atomic import sha256

    return _with_manifest(changed, lambda m: m["files"].update({"references.safetensors": sha256(
        changed["references.safetensors"])}))


@pytest.mark.parametrize("damage, words", [
    (lambda f: {**f, "directions/steering-1.safetensors": f["directions/steering-1.safetensors"][:-8]},
     "directions/steering-1.safetensors is not the file the manifest lists"),
    (lambda f: {k: v for k, v in f.items() if k != "references.safetensors"}, "references.safetensors is missing"),
    (lambda f: {**f, "manifest.json": b"{not json"}, "not valid JSON"),
    (lambda f: _with_manifest(f, lambda m: m.update(format="post-training-playground/steering-card@9")),
     "format post-training-playground/steering-card@9, and this project reads"),
    (lambda f: _with_manifest(f, lambda m: m["steerings"][1].update(alpha="strong")), "alpha must be a number"),
    (lambda f: _with_manifest(f, lambda m: m["steerings"][1].update(alpha=1e9)), "between -100 and 100"),
    (lambda f: _with_manifest(f, lambda m: m["steerings"][0].update(layers=[7])), "layer 7 is out of range"),
    (lambda f: _with_manifest(f, lambda m: m["steerings"][0].update(positions={"kind": "middle"})),
     "Unknown position mode"),
    (lambda f: _with_manifest(f, lambda m: m["decoding"].update(max_new_tokens=0)), "max new tokens"),
    (lambda f: _with_manifest(f, lambda m: m.update(steerings=[])), "1 to 16 steerings"),
    (_nan_references, "NaN or infinite"),
])
def test_a_damaged_card_is_one_sentence_naming_the_problem(made, damage, words):
    card, _ = made
    with pytest.raises(BadFileError) as refused:
        read_card_zip(zip_files(damage(_files(card))), "upload.zip")
    assert words in str(refused.value) and str(refused.value).startswith("upload.zip: ")
    assert "\n" not in str(refused.value)


def test_a_zip_that_is_not_a_card_or_reaches_outside_is_refused(made):
    with pytest.raises(BadFileError, match="not a zip file"):
        read_card_zip(b"PK\x03\x04 garbage", "x.zip")
    with pytest.raises(BadFileError, match="path outside its folder"):
        read_card_zip(zip_files({"../manifest.json": b"{}"}), "x.zip")
    with pytest.raises(BadFileError, match="no manifest.json"):
        read_card_zip(zip_files({"notes.txt": b"hello"}), "x.zip")


def test_an_affine_card_without_references_and_non_json_calibration_are_refused(pair, made):
    card, _ = made
    from steering.errors import SteeringError

    with pytest.raises(SteeringError, match="plain JSON"):
        card_for(pair, card.composition(), PROMPTS, chat=False, decoding=card.decoding, references=card.references,
                 calibration={"frontier": torch.ones(2)})
    files = _with_manifest(_files(card), lambda m: m.update(references=None))
    with pytest.raises(BadFileError, match="affine ablation needs references"):
        read_card_zip(zip_files(files), "upload.zip")


def test_a_rule_from_a_card_steers_the_positions_it_names(made):
    card, _ = made
    rules = [PositionRule.of(s.spec.positions) for s in card.steerings]
    assert [r.kind for r in rules] == ["prompt", "from", "all"]


@pytest.fixture(scope="module")
def two_affine(pair):
    """Two affine ablations from two contrasts, each with its own reference means, at two positions rules, and an
    addition that needs none: (composition, per-steering references, the run's table)."""
    toy, dogs = directions_for_pair(pair, CONTRAST)["post"], directions_for_pair(pair, OTHER)["post"]
    composition = Composition((
        SteeringSpec(toy, "ablate", (0, 1), ablation="affine", positions="prompt"),
        SteeringSpec(dogs, "ablate", (1, 2), ablation="affine", positions="generated"),
        SteeringSpec(toy, "add", (2,), 0.8, positions=(-1, 0)),
    ))
    references = (mean_residuals(pair, list(CONTRAST.negative)), mean_residuals(pair, list(OTHER.negative)), None)
    table = compare(pair.models(), pair.tokenizer, PROMPTS, composition, decoding=DecodingSettings(max_new_tokens=6),
                    chat=False, references=references).table
    return composition, references, table


def test_each_affine_steering_keeps_its_own_reference_means_through_the_card(pair, two_affine, tmp_path):
    composition, references, table = two_affine
    assert not torch.equal(references[0]["post"], references[1]["post"])  # two contrasts, two sets of means
    card = card_for(pair, composition, PROMPTS, chat=False, decoding=DecodingSettings(max_new_tokens=6), table=table,
                    references=references, read_from=("post", "post", "post"))
    folder = write_card(card, tmp_path / "card")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [s["reference"] for s in manifest["steerings"]] == ["references/steering-1.safetensors",
                                                               "references/steering-2.safetensors", None]
    assert manifest["references"] is None and not (folder / "references.safetensors").exists()
    again = read_card(folder)
    assert same_card(again, card)
    for i in (0, 1):
        assert same_means(again.steerings[i].reference, references[i])
    assert again.steerings[2].reference is None and again.reference_sets()[2] is None
    assert [PositionRule.of(s.spec.positions).kind for s in again.steerings] == ["prompt", "generated", "tokens"]
    assert reproduce(again, pair).table.text.tolist() == table.text.tolist()  # same machine: the same tokens
    page = (folder / "README.md").read_text()
    assert "steering 1's in `references/steering-1.safetensors`; steering 2's in `references/steering-2" in page


def test_steerings_with_the_same_means_share_one_file_and_one_set(pair, two_affine):
    composition, references, _ = two_affine
    card = card_for(pair, composition, PROMPTS, chat=False, decoding=DecodingSettings(max_new_tokens=6),
                    references=(references[0], references[0], None))
    files = _files(card)
    manifest = json.loads(files["manifest.json"])
    assert [s["reference"] for s in manifest["steerings"]][:2] == ["references/steering-1.safetensors"] * 2
    assert "references/steering-2.safetensors" not in files
    again = read_card_zip(zip_files(files), "card.zip")
    assert again.steerings[0].reference is again.steerings[1].reference  # read once
    assert same_means(again.steerings[1].reference, references[0])


def test_a_card_of_one_shared_reference_set_applies_it_to_every_affine_steering(pair, two_affine):
    """A card as they were written before per-steering means: one references.safetensors, no steering's own."""
    composition, references, _ = two_affine
    shared = references[0]
    decoding = DecodingSettings(max_new_tokens=6)
    table = compare(pair.models(), pair.tokenizer, PROMPTS, composition, decoding=decoding, chat=False,
                    references=shared).table
    files = _files(card_for(pair, composition, PROMPTS, chat=False, decoding=decoding, table=table,
                            references=shared))
    old = _with_manifest(files, lambda m: [s.pop("reference") for s in m["steerings"]])
    assert "references.safetensors" in old and not any(p.startswith("references/") for p in old)
    card = read_card_zip(zip_files(old), "old.zip")
    sets = card.reference_sets()
    assert same_means(sets[0], shared) and sets[0] is sets[1] and sets[2] is None
    assert reproduce(card, pair).table.text.tolist() == table.text.tolist()


def test_an_affine_steering_without_means_and_means_on_an_addition_are_refused(pair, two_affine):
    composition, references, _ = two_affine
    decoding = DecodingSettings(max_new_tokens=6)
    with pytest.raises(InvalidInputError, match="Steering 2 is an affine ablation: give its reference means"):
        card_for(pair, composition, PROMPTS, chat=False, decoding=decoding, references=(references[0], None, None))
    with pytest.raises(InvalidInputError, match="one set of reference means per steering \\(3\\), not 2"):
        card_for(pair, composition, PROMPTS, chat=False, decoding=decoding, references=references[:2])
    files = _files(card_for(pair, composition, PROMPTS, chat=False, decoding=decoding, references=references))
    moved = _with_manifest(files, lambda m: m["steerings"][2].update(reference=m["steerings"][0]["reference"]))
    with pytest.raises(BadFileError, match="steering 3 has reference means, but only an affine ablation uses them"):
        read_card_zip(zip_files(moved), "upload.zip")
    dropped = _with_manifest(files, lambda m: m["steerings"][1].update(reference=None))
    with pytest.raises(BadFileError, match="steering 2's affine ablation needs references"):
        read_card_zip(zip_files(dropped), "upload.zip")
