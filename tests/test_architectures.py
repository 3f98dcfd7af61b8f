"""Every architecture entry against the tiny model of each supported model type: the modules it names exist and
are what the entry says they are, its epsilon is the config's, and its LoRA targets are the layers' projections."""
import functools

import pytest
from peft import LoraConfig, get_peft_model
from tiny import CONFIGS, MODEL_TYPES, tiny_model
from torch import nn
from transformers import AutoModelForCausalLM

from steering.architectures import ARCHITECTURES, architecture_for, norm_eps_of, supported_model_types
from steering.errors import UnsupportedArchitectureError
from steering.model_view import ModelView


@functools.lru_cache
def _view(model_type: str) -> ModelView:
    return ModelView.of(tiny_model(model_type))


def test_every_tiny_model_type_is_supported_and_every_entry_has_a_tiny_model():
    assert set(MODEL_TYPES) <= set(supported_model_types())
    for arch in ARCHITECTURES:
        assert set(arch.model_types) & set(MODEL_TYPES), f"{arch.name} has no tiny model in tests/tiny.py"


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_the_entry_names_modules_that_exist_and_fit(model_type):
    view = _view(model_type)
    config = view.model.config
    assert isinstance(view.layers, nn.ModuleList) and len(view.layers) == config.num_hidden_layers
    assert view.embedding.weight.shape == (config.vocab_size, view.d_model)
    assert view.unembedding.weight.shape == (config.vocab_size, view.d_model)
    assert any(p is view.final_norm.weight for p in view.decoder_stack.parameters())
    for layer in range(view.n_layers):
        block = view.layer(layer)
        for part in (view.attn_out(layer), view.mlp_out(layer), view.mlp_down(layer)):
            assert any(m is part for m in block.modules())
        d_mlp = view.mlp_output_weight(layer).shape[1]
        assert view.mlp_output_weight(layer).shape == (view.d_model, d_mlp) and d_mlp > view.d_model


def _post_mlp_norm_inferred(view: ModelView, layer: int) -> nn.Module | None:
    """The old inference from the module tree: the MLP's hook module is a norm when it does not hold mlp_down."""
    out, down = view.mlp_out(layer), view.mlp_down(layer)
    return None if any(m is down for m in out.modules()) else out


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_the_post_mlp_norm_is_the_one_the_module_tree_implies(model_type):
    view = _view(model_type)
    for layer in range(view.n_layers):
        assert view.mlp_post_norm(layer) is _post_mlp_norm_inferred(view, layer)
    assert (view.mlp_post_norm(0) is not None) == model_type.startswith(("gemma2", "gemma3"))


EPS_FIELDS = ("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps")  # where each config keeps its epsilon


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_norm_epsilon_is_the_configs(model_type):
    config = CONFIGS[model_type]()
    field = next(name for name in EPS_FIELDS if getattr(config, name, None) is not None)
    setattr(config, field, 0.0123)  # no architecture's default, so a guessed or fallback value cannot pass
    view = ModelView.of(AutoModelForCausalLM.from_config(config))
    norms = [view.final_norm] + [n for n in (view.mlp_post_norm(0),) if n is not None]
    for norm in norms:
        assert view.norm_eps(norm) == 0.0123 and norm_eps_of(norm) == 0.0123


def test_a_norm_without_epsilon_is_a_precise_error():
    with pytest.raises(UnsupportedArchitectureError, match="no epsilon"):
        norm_eps_of(nn.Identity())
    with pytest.raises(UnsupportedArchitectureError, match="variance_epsilon"):
        _view("llama").norm_eps(nn.LayerNorm(4))


def _projections(view: ModelView) -> set[str]:
    """Names (below the model) of every Linear or GPT-2 Conv1D inside the decoder layers."""
    layer_ids = {id(m) for block in view.layers for m in block.modules()}
    return {name for name, m in view.model.named_modules()
            if id(m) in layer_ids and (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D")}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_lora_targets_are_every_projection_in_the_layers_and_nothing_else(model_type):
    view = _view(model_type)
    expected = _projections(view)
    model = get_peft_model(tiny_model(model_type), LoraConfig(r=2, target_modules=list(view.arch.lora_targets)))
    adapted = {name.removeprefix("base_model.model.") for name, m in model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == expected and expected


def test_float16_overflow_is_said_for_gemma_only():
    flagged = {t for arch in ARCHITECTURES if arch.float16_overflow for t in arch.model_types}
    assert flagged == {"gemma", "gemma2", "gemma3_text"}
    assert architecture_for("llama").float16_overflow == ""


def test_unknown_model_type_names_the_supported_ones():
    with pytest.raises(UnsupportedArchitectureError, match="gpt_neox"):
        architecture_for("bloom")


def test_entries_are_frozen():
    with pytest.raises(AttributeError):
        ARCHITECTURES[0].mlp_out = "mlp"  # type: ignore[misc]
