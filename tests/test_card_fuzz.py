"""Property tests of the steering card's reader: whatever the bytes of the zip, and whatever JSON stands in any field
of its manifest, the answer is a card or one of the project's named errors, never a library's exception."""
from __future__ import annotations

import json
import os

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.atomic import sha256
from steering.card import CardSteering, SteeringCard, card_files, card_zip, read_card_zip, zip_files
from steering.directions import Direction, DirectionInfo
from steering.errors import SteeringError
from steering.generation import DecodingSettings, SteeringSpec

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)


def _card() -> SteeringCard:
    g = torch.Generator().manual_seed(0)
    direction = Direction(torch.randn(4, 8, generator=g), DirectionInfo("tiny/post", "toy", "abc"), torch.ones(4))
    steerings = (CardSteering(SteeringSpec(direction, "ablate", (1,), ablation="affine", positions="prompt"), "post",
                              "toy"),
                 CardSteering(SteeringSpec(direction, "add", (2, 3), 0.3, positions=(-1, 0)), None, "file"),
                 CardSteering(SteeringSpec(direction, "ablate", (2,), ablation="affine", positions="generated"), "post",
                              "own means", {"base": torch.full((4, 8), 2.0), "post": torch.full((4, 8), 3.0)}))
    load = {"name": None, "base": "/b", "post": "/p", "dtype": "float32", "quantization": None, "device": "cpu"}
    return SteeringCard({"base": "b@x/float32/none", "post": "p@y/float32/none"}, load, "llama", steerings,
                        ("the cat is",), False, DecodingSettings(max_new_tokens=4),
                        ({"prompt": "the cat is", "model": "base", "steered": False, "text": "w1"},),
                        {"base": torch.zeros(4, 8), "post": torch.ones(4, 8)}, {"chosen": {"layer": 1}})


FILES = card_files(_card())
ZIPPED = card_zip(_card())
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) |
                    st.text(max_size=12), lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# every place in the manifest a value sits: (path of keys and indices)
FIELDS = [("format",), ("project_version",), ("created_at",), ("pair",), ("pair", "fingerprints"),
          ("pair", "fingerprints", "base"), ("pair", "load"), ("pair", "load", "dtype"), ("pair", "model_type"),
          ("steerings",), ("steerings", 0), ("steerings", 1, "direction"), ("steerings", 0, "mode"),
          ("steerings", 0, "layers"), ("steerings", 1, "layers", 0), ("steerings", 1, "alpha"),
          ("steerings", 0, "units"), ("steerings", 0, "ablation"), ("steerings", 0, "positions"),
          ("steerings", 1, "positions", "tokens"), ("steerings", 0, "positions", "kind"), ("steerings", 0, "read_from"),
          ("steerings", 0, "label"), ("steerings", 2, "reference"), ("steerings", 1, "reference"), ("references",),
          ("prompts",), ("prompts", 0), ("chat",), ("decoding",),
          ("decoding", "max_new_tokens"), ("decoding", "temperature"), ("decoding", "greedy"), ("generations",),
          ("generations", 0), ("generations", 0, "steered"), ("calibration",), ("files",)]


def _read_or_named_error(data: bytes) -> None:
    try:
        card = read_card_zip(data, "fuzz.zip")
    except SteeringError:
        return
    assert isinstance(card, SteeringCard) and card.steerings


def test_the_untouched_card_reads():
    card = read_card_zip(ZIPPED)
    assert card.calibration == {"chosen": {"layer": 1}}
    shared, none, own = card.reference_sets()  # the card's shared set, nothing for the addition, the third's own
    assert torch.equal(shared["post"], torch.ones(4, 8)) and none is None and torch.equal(own["post"],
                                                                                          torch.full((4, 8), 3.0))


@FUZZ
@given(st.sampled_from(FIELDS), JSON)
def test_any_json_in_any_field_gives_a_card_or_a_named_error(where, value):
    manifest = json.loads(FILES["manifest.json"])
    holder = manifest
    for step in where[:-1]:
        holder = holder[step]
    holder[where[-1]] = value
    _read_or_named_error(zip_files({**FILES, "manifest.json": json.dumps(manifest).encode()}))


@FUZZ
@given(st.sampled_from(sorted(p for p in FILES if p != "manifest.json")), st.binary(max_size=300))
def test_a_replaced_file_with_its_hash_updated_gives_a_card_or_a_named_error(path, data):
    manifest = json.loads(FILES["manifest.json"])
    manifest["files"][path] = sha256(data)
    _read_or_named_error(zip_files({**FILES, path: data, "manifest.json": json.dumps(manifest).encode()}))


@FUZZ
@given(st.integers(0, len(ZIPPED)), st.lists(st.tuples(st.integers(0, len(ZIPPED) - 1), st.integers(1, 255)),
                                             max_size=4))
def test_a_damaged_zip_gives_a_card_or_a_named_error(cut, flips):
    data = bytearray(ZIPPED[:cut] if cut else ZIPPED)
    for at, bits in flips:
        if at < len(data):
            data[at] ^= bits
    _read_or_named_error(bytes(data))
