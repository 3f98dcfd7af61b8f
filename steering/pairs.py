"""Model pairs: a base model and its post-trained sibling, one tokenizer for both.

    from steering import load_pair
    pair = load_pair("demo")                      # a registered name, or:
    pair = load_pair(base="org/model", post="org/model-instruct", quantization="4bit")
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

from . import memory
from .architectures import architecture_for
from .errors import BadFileError, InvalidInputError, SettingError, SteeringError
from .model_view import ModelView
from .registry import PairSpec, Source, pair_spec
from .sources import Report, _quiet, read_config, resolve

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Quantization = Literal["none", "8bit", "4bit"] | None
Device = Literal["auto", "cpu", "cuda"]
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATIONS = (None, "none", "8bit", "4bit")


@dataclass(frozen=True)
class LoadSettings:
    """How to load: dtype 'auto' is bfloat16 on a GPU and float32 on the CPU; quantization through bitsandbytes
    (it runs on the CPU too); device 'auto' is the GPU when there is one, spread over all GPUs by accelerate."""

    dtype: Dtype = "auto"
    quantization: Quantization = None
    device: Device = "auto"

    def resolved(self) -> "LoadSettings":
        self.check()
        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise InvalidInputError("device='cuda' was asked for, but no CUDA GPU is visible.")
        dtype = self.dtype if self.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
        quantization = None if self.quantization in (None, "none") else self.quantization
        return LoadSettings(dtype, quantization, device)

    def check(self) -> None:
        """Refuse a value outside the allowed ones: device 'tpu' once loaded on the CPU and reported 'tpu'."""
        for name, value, allowed in (("device", self.device, DEVICES), ("dtype", self.dtype, DTYPES),
                                     ("quantization", self.quantization, QUANTIZATIONS)):
            if value not in allowed:
                raise SettingError(f"Unknown {name} {value!r}: use one of "
                                   f"{', '.join(repr(a) for a in allowed if a is not None)}.")


@dataclass
class ModelPair:
    name: str
    spec: PairSpec
    base: PreTrainedModel
    post: PreTrainedModel | None  # None only when loaded with base_only=True
    tokenizer: PreTrainedTokenizerBase
    settings: LoadSettings
    estimate: memory.MemoryEstimate
    folders: dict[str, Path]  # role -> the resolved folder each model was loaded from

    def models(self) -> dict[str, PreTrainedModel]:
        """{'base': ..., 'post': ...}, the post-trained model only when loaded."""
        return {"base": self.base} | ({"post": self.post} if self.post is not None else {})

    def model_id(self, role: str) -> str:
        """A readable name for one model of the pair, used in direction files."""
        return f"{self.name}/{role}"

    def fingerprint(self, role: str) -> str:
        """What identifies one model's activations: its weights' folder (which names the adapter's hash for a
        merged adapter) and how it was loaded. Cache keys use it, so a retrained adapter never hits stale entries."""
        s = self.settings
        return f"{self.model_id(role)}@{self.folders[role].name}/{s.dtype}/{s.quantization or 'none'}"

    @property
    def n_layers(self) -> int:
        return ModelView.of(self.base).n_layers

    @property
    def d_model(self) -> int:
        return ModelView.of(self.base).d_model

    def memory_bytes(self) -> int:
        return sum(m.get_memory_footprint() for m in self.models().values())


def _quantization_config(settings: LoadSettings) -> BitsAndBytesConfig | None:
    if settings.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=getattr(torch, settings.dtype))
    if settings.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(folder: Path, settings: LoadSettings) -> PreTrainedModel:
    """One causal LM from a resolved folder, in eval mode, with the given (resolved) settings."""
    settings.check()
    kwargs: dict = {"dtype": getattr(torch, settings.dtype)}
    quantization = _quantization_config(settings)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if settings.device == "cuda":
        kwargs["device_map"] = "auto"  # accelerate spreads a pair too large for one GPU over several
    elif quantization is not None:
        kwargs["device_map"] = "cpu"
    with warnings.catch_warnings(), readable(folder):
        warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    architecture_for(model.config.model_type)  # fail now, with the supported list, not inside a study
    _check_tied_embeddings(model, folder)
    return model.eval()


@contextlib.contextmanager
def readable(folder: Path):
    """What transformers, safetensors and huggingface_hub raise on a model folder with a truncated weights file or a
    config.json of the wrong types, as one BadFileError naming the folder (the library's own errors pass as they
    are)."""
    try:
        yield
    except SteeringError:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError, StrictDataclassError) as e:
        raise BadFileError(folder, f"transformers cannot load the model in it ({str(e).strip()[:300]})",
                           "Check that it holds a whole model (config.json and its .safetensors weights); download "
                           "it again if a file was cut short.") from None


def _check_tied_embeddings(model: PreTrainedModel, folder: Path) -> None:
    """A model whose config ties the unembedding to the embedding must come out tied; an untied one has a
    randomly initialised unembedding and writes nonsense."""
    output = model.get_output_embeddings()
    if getattr(model.config, "tie_word_embeddings", False) and output is not None:
        if output.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            raise InvalidInputError(f"{folder}: the output embeddings did not load tied to the input embeddings.")


def _tokenizer(folder: Path, spec: PairSpec) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    template = spec.chat_template_text()
    if template is not None:
        tokenizer.chat_template = template
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


KNOWN_END_OF_TURN = ("<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>")


def _stop_at_end_of_turn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, end_of_turn: str | None) -> None:
    """Make a plain model.generate() stop at the end of the model's turn, as well as at EOS. Pairs not in the
    registry get the first end-of-turn token of the common chat formats that their vocabulary has."""
    vocab = tokenizer.get_vocab()
    end_of_turn = end_of_turn or next((t for t in KNOWN_END_OF_TURN if t in vocab), None)
    eos = model.generation_config.eos_token_id
    stops = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None:
        stops.append(tokenizer.eos_token_id)
    if end_of_turn and end_of_turn in vocab:
        stops.append(tokenizer.convert_tokens_to_ids(end_of_turn))
    model.generation_config.eos_token_id = list(dict.fromkeys(stops))
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def _custom_spec(base: Source | None, post: Source | None, base_only: bool = False) -> PairSpec:
    """The spec of two sources; a base alone (post None) only with base_only, as the base of a pair without a
    post-trained model (the studies then run on the base alone)."""
    if base is None:
        raise InvalidInputError("Give a registered pair name, or a base= source (and a post= source).")
    if post is None and not base_only:
        raise InvalidInputError("Give both base= and post= sources (or base_only=True), or a registered pair name.")
    return PairSpec(name=str(base) if post is None else f"{base} | {post}", base=base,
                    post=base if post is None else post)


def _spec(name: str | None, base: Source | None, post: Source | None, base_only: bool = False) -> PairSpec:
    return pair_spec(name) if name is not None else _custom_spec(base, post, base_only)


def prepare_sources(
    name: str | None = None,
    *,
    base: Source | None = None,
    post: Source | None = None,
    base_only: bool = False,
    report: Report = _quiet,
) -> dict[str, Path]:
    """Resolve a pair's sources to local folders, doing the one-time conversions (GGUF, adapter merge) with
    progress reported. load_pair does this too; call it first where progress must be shown outside a cache."""
    spec = _spec(name, base, post, base_only)
    template = spec.chat_template_text()
    folders = {"base": resolve(spec.base, report, template)}
    if not base_only:
        folders["post"] = resolve(spec.post, report, template)
    return folders


def load_pair(
    name: str | None = None,
    *,
    base: Source | None = None,
    post: Source | None = None,
    dtype: Dtype = "auto",
    quantization: Quantization = None,
    device: Device = "auto",
    base_only: bool = False,
    report: Report = _quiet,
) -> ModelPair:
    """Load a registered pair by name, or a pair of sources. Checks memory before loading anything."""
    spec = _spec(name, base, post, base_only)
    settings = LoadSettings(dtype, quantization, device).resolved()
    resolved = prepare_sources(name, base=base, post=post, base_only=base_only, report=report)
    base_dir, post_dir = resolved["base"], resolved.get("post")
    arch = architecture_for(_model_type(base_dir))
    if settings.dtype == "float16" and arch.float16_overflow:
        warnings.warn(f"{arch.name} overflows in float16 ({arch.float16_overflow}): use bfloat16 or float32.")
    with readable(base_dir):
        estimate = memory.estimate(base_dir, settings.dtype, settings.quantization, n_models=1 if base_only else 2)
    memory.check_fits(estimate, settings.device)
    report(f"Loading {spec.name} ({estimate}) on {settings.device}, {settings.dtype}"
           + (f", {settings.quantization}" if settings.quantization else ""))
    folders = [base_dir] + ([post_dir] if post_dir else [])
    # sequential on purpose: transformers keeps global state while loading, and two loads in threads can leave
    # a later model with untied (randomly initialised) output embeddings
    models = [load_model(folder, settings) for folder in folders]
    tokenizer = _tokenizer(post_dir or base_dir, spec)
    for model in models:
        _stop_at_end_of_turn(model, tokenizer, spec.end_of_turn)
    pair = ModelPair(spec.name, spec, models[0], models[1] if post_dir else None, tokenizer, settings, estimate,
                     dict(zip(("base", "post"), folders)))
    if pair.post is not None:
        _check_same_shape(pair)
    return pair


def _model_type(folder: Path) -> str:
    return str(read_config(folder).get("model_type", "unknown"))


def _check_same_shape(pair: ModelPair) -> None:
    base, post = ModelView.of(pair.base), ModelView.of(pair.post)
    if (base.n_layers, base.d_model) != (post.n_layers, post.d_model):
        raise InvalidInputError(f"The two models differ in shape ({base.n_layers}x{base.d_model} vs "
                                f"{post.n_layers}x{post.d_model}): a pair must be a model and its post-trained sibling.")


def with_base_only(pair: ModelPair) -> ModelPair:
    """The same pair holding its base model alone (nothing is loaded or freed)."""
    return ModelPair(pair.name, pair.spec, pair.base, None, pair.tokenizer, pair.settings, pair.estimate,
                     {"base": pair.folders["base"]})


def load_beside(loaded: ModelPair, name: str, report: Report = _quiet) -> ModelPair:
    """A registered pair whose base is `loaded`'s base (a stage of the road, e.g. 'demo@step36'), loading only its
    post-trained model beside the loaded base, with the same settings; the base stage ('demo@base') loads nothing
    and pairs the base with itself."""
    spec = pair_spec(name)
    if spec.base != loaded.spec.base:
        raise InvalidInputError(f"'{name}' has another base than the loaded pair '{loaded.name}'.")
    if spec.post == spec.base:
        post, post_dir = loaded.base, loaded.folders["base"]
    else:
        post_dir = resolve(spec.post, report, spec.chat_template_text())
        with readable(post_dir):
            need = memory.estimate(post_dir, loaded.settings.dtype, loaded.settings.quantization, n_models=1)
        memory.check_fits(need, loaded.settings.device)
        post = load_model(post_dir, loaded.settings)
        _stop_at_end_of_turn(post, loaded.tokenizer, spec.end_of_turn)
    pair = ModelPair(spec.name, spec, loaded.base, post, loaded.tokenizer, loaded.settings, loaded.estimate,
                     {"base": loaded.folders["base"], "post": post_dir})
    _check_same_shape(pair)
    return pair
