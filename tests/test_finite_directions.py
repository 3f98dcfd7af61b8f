"""Issue 27 §2: a Direction never holds NaN or infinity (computed, loaded, uploaded, from a control vector, or by
arithmetic), nor resid_norms of the wrong shape; steering strengths are finite where a spec or a sweep is made."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.control_vector import from_control_vector, write_control_vector
from steering.directions import Direction, DirectionInfo
from steering.errors import InvalidDirectionError, SettingError, SteeringError
from steering.generation import SteeringSpec, check_alpha

INFO = DirectionInfo("tiny", "unit", "h")
NON_FINITE = [float("nan"), float("inf"), -float("inf")]


def _vectors(n_layers: int = 3, d: int = 8) -> torch.Tensor:
    return torch.randn(n_layers, d, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_vectors_are_refused_with_the_layer(bad):
    vectors = _vectors()
    vectors[1, 3] = bad
    with pytest.raises(InvalidDirectionError, match=r"NaN or infinite values at layer\(s\) 1:"):
        Direction(vectors, INFO)


@pytest.mark.parametrize("norms, why", [
    (torch.tensor([1.0, float("nan"), 2.0]), "NaN, infinite or negative"),
    (torch.tensor([1.0, float("inf"), 2.0]), "NaN, infinite or negative"),
    (torch.tensor([1.0, -1.0, 2.0]), "NaN, infinite or negative"),
    (torch.ones(4), r"shape \[4\]; they must be one norm per layer, shape \[3\]"),
    (torch.ones(3, 1), r"shape \[3, 1\]"),
])
def test_bad_resid_norms_are_refused(norms, why):
    with pytest.raises(InvalidDirectionError, match=why):
        Direction(_vectors(), INFO, norms)


def test_vectors_must_be_a_matrix():
    with pytest.raises(InvalidDirectionError, match=r"shape \[n_layers, d_model\], not \[8\]"):
        Direction(torch.ones(8), INFO)


def test_a_nan_direction_file_is_refused_on_loading():
    good = Direction(_vectors(), INFO, torch.ones(3))
    data = good.to_bytes()
    assert torch.equal(Direction.from_bytes(data).vectors, good.vectors)
    nan = object.__new__(Direction)  # bypass the check to write the kind of file a broken tool would
    object.__setattr__(nan, "vectors", torch.full((3, 8), float("nan")))
    object.__setattr__(nan, "info", INFO)
    object.__setattr__(nan, "resid_norms", None)
    with pytest.raises(InvalidDirectionError, match="NaN or infinite"):
        Direction.from_bytes(nan.to_bytes(), "upload.safetensors")


def test_an_all_nan_control_vector_is_refused():
    data = write_control_vector({2: torch.full((8,), float("nan")), 3: torch.ones(8)}, "llama")
    with pytest.raises(InvalidDirectionError, match="NaN or infinite values at layer"):
        from_control_vector(data, n_layers=5)


def test_arithmetic_that_overflows_is_refused():
    with pytest.raises(InvalidDirectionError):
        Direction(_vectors(), INFO) * float("inf")


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_alpha_accepts_exactly_the_finite_alphas_within_the_bound(alpha):
    if math.isfinite(alpha) and abs(alpha) <= 100:
        assert check_alpha(alpha) == alpha
    else:
        with pytest.raises(SettingError):
            SteeringSpec(Direction(_vectors(), INFO), layers=(0,), alpha=alpha)


@pytest.mark.parametrize("changes", [{"temperature": float("nan")}, {"temperature": 0.0}, {"top_p": float("inf")},
                                     {"top_p": 1.5}])
def test_sampling_settings_are_finite_and_in_range(changes):
    from steering.generation import DecodingSettings

    with pytest.raises(SettingError, match="Sampling needs a temperature above 0"):
        DecodingSettings(greedy=False, **changes).generate_kwargs()
    assert DecodingSettings(greedy=True, **changes).generate_kwargs()["do_sample"] is False  # ignored when greedy


def test_a_sweep_with_a_nan_alpha_is_refused_before_generating():
    from tiny import tiny_model, tiny_tokenizer

    from steering.sweep import alpha_sweep

    direction = Direction(_vectors(3, 32), INFO, torch.ones(3))
    with pytest.raises(SettingError, match="Sweep alpha nan"):
        alpha_sweep(tiny_model(), tiny_tokenizer(), "the cat", direction, [0.0, float("nan")], [1])
    assert issubclass(SettingError, SteeringError) and issubclass(InvalidDirectionError, SteeringError)
