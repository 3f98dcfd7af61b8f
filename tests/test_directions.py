import json

import pytest
import torch
from safetensors.torch import save as save_tensors
from tiny import tiny_model, tiny_tokenizer

from steering.directions import Direction, DirectionInfo
from steering.errors import IncompatibleDirectionError, InvalidInputError
from steering.extraction import collect_residuals, diff_in_means

POS = ["w1 w2 the cat is true", "w3 the dog is true", "w4 w5 w6 a cat is true"]
NEG = ["w1 w2 the cat is false", "w7 the dog is false", "a false"]


def _direction(n_layers=3, d=8, seed=0) -> Direction:
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(n_layers, d, generator=g), DirectionInfo(model="m", dataset="d", dataset_hash="h"),
                     torch.rand(n_layers, generator=g) + 1)


def test_batched_extraction_equals_unbatched_and_hidden_states():
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    prompts = POS + NEG
    batched = collect_residuals(model, tok, prompts, batch_size=4, positions=(-2, -1))
    single = collect_residuals(model, tok, prompts, batch_size=1, positions=(-2, -1))
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        hs = model(**tok([prompts[0]], return_tensors="pt"), output_hidden_states=True).hidden_states
    torch.testing.assert_close(batched[0, :, 1], torch.stack([h[0, -1] for h in hs[:3]]))


def test_diff_in_means_is_the_difference_of_the_means():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    direction = diff_in_means(model, tok, POS, NEG, dataset="toy", batch_size=2)
    acts = collect_residuals(model, tok, POS + NEG)[:, :, 0]
    torch.testing.assert_close(direction.vectors, acts[:3].mean(0) - acts[3:].mean(0))
    assert direction.info.dataset == "toy" and direction.n_layers == 3 and direction.d_model == 32
    torch.testing.assert_close(direction.resid_norms, acts.norm(dim=-1).mean(0))
    other = diff_in_means(model, tok, POS, NEG[:2] + ["w9"], dataset="toy")
    assert other.info.dataset_hash != direction.info.dataset_hash


def test_extraction_stops_before_the_unembedding():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    calls = []
    model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head"))
    model.model.layers[2].register_forward_hook(lambda *a: calls.append("last layer"))
    collect_residuals(model, tok, POS)
    assert calls == []


def test_save_load_round_trip_with_sidecar(tmp_path):
    d = _direction()
    path = d.save(tmp_path / "truth")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["hook_point"] == "resid_pre" and "0-based" in sidecar["usage"] and sidecar["n_layers"] == 3
    back = Direction.load(path)
    torch.testing.assert_close(back.vectors, d.vectors)
    torch.testing.assert_close(back.resid_norms, d.resid_norms)
    assert back.info == d.info


def test_the_downloaded_bytes_are_the_saved_file(tmp_path):
    d = _direction()
    (tmp_path / "down.safetensors").write_bytes(d.to_bytes())
    back = Direction.load(tmp_path / "down.safetensors")
    torch.testing.assert_close(back.vectors, d.vectors)
    assert back.info == d.info


def test_an_upload_reads_back_from_its_bytes():
    d = _direction()
    back = Direction.from_bytes(d.to_bytes(), "upload.safetensors")
    torch.testing.assert_close(back.vectors, d.vectors)
    torch.testing.assert_close(back.resid_norms, d.resid_norms)
    assert back.info == d.info


def test_load_rejects_a_file_that_is_not_a_direction(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(InvalidInputError, match="not a direction file"):
        Direction.load(bad)
    with pytest.raises(InvalidInputError, match="missing.safetensors is not a direction file"):
        Direction.load(tmp_path / "missing")


@pytest.mark.parametrize("data, message", [
    (b"", "up.safetensors is not a direction file"),
    (b"\xff" * 8 + b"{}", "up.safetensors is not a direction file"),
    (_direction().to_bytes()[:40], "up.safetensors is not a direction file"),
    (save_tensors({"vectors": torch.zeros(2, 3)}), "not a direction file"),
    (save_tensors({"vectors": torch.zeros(2, 3)}, metadata={"direction": "[1]"}),
     "not a JSON object"),
    (save_tensors({"other": torch.zeros(2, 3)}, metadata={"direction": "{}"}),
     "no \\[n_layers, d_model\\] tensor"),
])
def test_a_malformed_upload_is_refused_in_one_sentence(data, message):
    with pytest.raises(InvalidInputError, match=message) as caught:
        Direction.from_bytes(data, "up.safetensors")
    assert "\n" not in str(caught.value)


def test_cosine_arithmetic_and_shape_checks():
    a, b = _direction(seed=1), _direction(seed=2)
    torch.testing.assert_close(a.cosine(a), torch.ones(3))
    torch.testing.assert_close((a * -2).cosine(a), -torch.ones(3))
    torch.testing.assert_close((a - a).vectors, torch.zeros(3, 8))
    assert a.cosine(b).shape == (3,)
    with pytest.raises(IncompatibleDirectionError, match="4 layers x 8 dims"):
        a.cosine(_direction(n_layers=4))


def test_steering_vectors_are_in_units_of_the_residual_norm():
    d = _direction()
    vectors = d.steering_vectors([0, 2], alpha=2.0)
    assert set(vectors) == {0, 2}
    assert vectors[2].norm() == pytest.approx(2.0 * float(d.resid_norms[2]))
    assert torch.nn.functional.cosine_similarity(vectors[2], d.vectors[2], dim=0) == pytest.approx(1.0)


def test_direction_cache_computes_once_per_key(tmp_path):
    from steering.direction_cache import DirectionCache

    cache = DirectionCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return _direction()

    key = cache.key("m@folder/float32/none", "abc", "diff_in_means", -1)
    first = cache.get_or_compute(key, compute)
    again = cache.get_or_compute(key, compute)
    assert len(calls) == 1
    torch.testing.assert_close(first.vectors, again.vectors)
    assert cache.key("m@folder/float32/none", "abc", "diff_in_means", -2) != key
    assert cache.key("m@other/float32/none", "abc", "diff_in_means", -1) != key
    assert [meta["dataset"] for _, meta in cache.entries()] == ["d"]
