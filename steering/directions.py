"""The `Direction` value: one vector per layer and a record of what made it; arithmetic, comparison, save/load.

A direction file is a safetensors file holding `vectors` [n_layers, d_model] (and `resid_norms` [n_layers] when
known), with the metadata both inside it and in a JSON sidecar beside it (`name.safetensors` + `name.json`); the
sidecar also holds the safetensors file's size and sha256, so a reader can tell the pair belongs together."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save

from .atomic import sha256, write_atomic
from .errors import IncompatibleDirectionError, InvalidDirectionError, InvalidInputError, LayerOutOfRangeError

FORMAT = "post-training-playground/direction@1"
USAGE = (
    "vectors[l] lives in the residual stream entering decoder layer l (hook point resid_pre, 0-based layer index; "
    "HF output_hidden_states[l]). To steer: add alpha * vectors[l] / ||vectors[l]|| * resid_norms[l] there. "
    "To ablate: project the unit vector out of the stream at every layer."
)


@dataclass(frozen=True)
class DirectionInfo:
    """What made a direction; saved beside it."""

    model: str
    dataset: str
    dataset_hash: str
    method: str = "diff_in_means"
    position: int | str = -1  # offset from the prompt's end the activations were read at
    hook_point: str = "resid_pre"
    use: Literal["add", "ablate", "either"] = "either"
    normalized: bool = False
    revision: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class Direction:
    vectors: torch.Tensor  # [n_layers, d_model] float32
    info: DirectionInfo
    resid_norms: torch.Tensor | None = None  # [n_layers] typical residual norm at the reading position

    def __post_init__(self) -> None:
        check_direction_values(self.vectors, self.resid_norms, self.info.model)

    @property
    def n_layers(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[1])

    def at(self, layer: int) -> torch.Tensor:
        if not 0 <= layer < self.n_layers:
            raise LayerOutOfRangeError(f"Layer {layer} is out of range: this direction has layers 0..{self.n_layers - 1}.")
        return self.vectors[layer]

    def unit(self) -> "Direction":
        return replace(self, vectors=torch.nn.functional.normalize(self.vectors, dim=-1),
                       info=replace(self.info, normalized=True))

    def cosine(self, other: "Direction") -> torch.Tensor:
        """[n_layers] cosine similarity per layer."""
        self.check_fits(other.n_layers, other.d_model, what="the other direction")
        return torch.nn.functional.cosine_similarity(self.vectors, other.vectors, dim=-1)

    def check_fits(self, n_layers: int, d_model: int, what: str = "this model") -> None:
        if (self.n_layers, self.d_model) != (n_layers, d_model):
            raise IncompatibleDirectionError(
                f"Direction from {self.info.model} has {self.n_layers} layers x {self.d_model} dims, but {what} has "
                f"{n_layers} layers x {d_model} dims: a direction only transfers between models of the same shape."
            )

    def steering_vectors(self, layers: list[int], alpha: float, units: Literal["resid", "raw"] = "resid") -> dict[int, torch.Tensor]:
        """Vectors to add per layer. In "resid" units alpha = 1 adds a unit vector times the typical residual
        norm at that layer; in "raw" units alpha multiplies the stored vector as is."""
        if units == "raw":
            return {layer: alpha * self.at(layer) for layer in layers}
        if self.resid_norms is None:
            raise InvalidInputError("This direction has no residual norms stored; use units='raw'.")
        return {layer: alpha * float(self.resid_norms[layer]) * torch.nn.functional.normalize(self.at(layer), dim=0)
                for layer in layers}

    # repeng-style arithmetic: the result keeps the left operand's provenance, marked as derived
    def _derived(self, vectors: torch.Tensor, how: str) -> "Direction":
        return replace(self, vectors=vectors, info=replace(self.info, method=f"{self.info.method} ({how})"))

    def __mul__(self, k: float) -> "Direction":
        return self._derived(self.vectors * float(k), f"x{k:g}")

    __rmul__ = __mul__

    def __neg__(self) -> "Direction":
        return self * -1.0

    def __add__(self, other: "Direction") -> "Direction":
        other.check_fits(self.n_layers, self.d_model, "the direction it is added to")
        return self._derived(self.vectors + other.vectors, f"+ {other.info.dataset}")

    def __sub__(self, other: "Direction") -> "Direction":
        return self + (-other)

    def save(self, path: str | Path) -> Path:
        """Write `path` (.safetensors) and its JSON sidecar, each replaced in one step (steering/atomic.py): a
        reader sees each file whole, old or new, and the sidecar's sha256 tells whether the two match."""
        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_bytes()
        write_atomic(path, data)
        sidecar = {**self.metadata(), "safetensors_size": len(data), "safetensors_sha256": sha256(data)}
        write_atomic(path.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode())
        return path

    def to_bytes(self) -> bytes:
        """The .safetensors file's content (the metadata rides inside it), for a download button."""
        tensors = {"vectors": self.vectors.detach().float().cpu().contiguous()}
        if self.resid_norms is not None:
            tensors["resid_norms"] = self.resid_norms.detach().float().cpu().contiguous()
        return save(tensors, metadata={"direction": json.dumps(self.metadata())})

    def metadata(self) -> dict:
        return {"format": FORMAT, "usage": USAGE, "n_layers": self.n_layers, "d_model": self.d_model,
                **asdict(self.info)}

    @classmethod
    def load(cls, path: str | Path) -> "Direction":
        path = Path(path).with_suffix(".safetensors")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise _not_a_direction(path.name, e) from None
        return cls.from_bytes(data, path.name)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "direction") -> "Direction":
        """The direction in a direction file's content (an upload, or `to_bytes`); `name` is for messages."""
        try:
            tensors = load_tensors(data)
            meta = json.loads(_safetensors_metadata(data)["direction"])
        except (KeyError, ValueError, TypeError, AttributeError, SafetensorError) as e:
            raise _not_a_direction(name, e) from None
        if not isinstance(meta, dict):
            raise _not_a_direction(name, "its 'direction' metadata is not a JSON object")
        return cls.from_parts(tensors, meta, name)

    @classmethod
    def from_parts(cls, tensors: dict[str, torch.Tensor], meta: dict, name: str = "direction") -> "Direction":
        vectors = tensors.get("vectors")
        if vectors is None or vectors.dim() != 2:
            raise InvalidInputError(f"{name} holds no [n_layers, d_model] tensor named 'vectors'.")
        fields = {k: meta[k] for k in DirectionInfo.__dataclass_fields__ if k in meta}
        missing = {"model", "dataset", "dataset_hash"} - fields.keys()
        if missing:
            raise InvalidInputError(f"{name}'s metadata lacks {', '.join(sorted(missing))}.")
        norms = tensors.get("resid_norms")
        if norms is not None and tuple(norms.shape) != (vectors.shape[0],):  # the page would index past its end
            raise InvalidInputError(f"{name}: 'resid_norms' has shape {list(norms.shape)}, not [{vectors.shape[0]}] "
                                    f"(one norm per layer of 'vectors'). {REWRITE}")
        return cls(vectors.float(), DirectionInfo(**fields), None if norms is None else norms.float())


def check_direction_values(vectors: torch.Tensor, resid_norms: torch.Tensor | None, source: str) -> None:
    """Refuse numbers that cannot steer, where a direction is made (computed, loaded, uploaded, from a control
    vector, or by arithmetic): a NaN would otherwise spread through every row a hook touches, and a NaN alpha
    scale from a NaN norm likewise."""
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2:
        raise InvalidDirectionError(f"The direction from {source} needs vectors of shape [n_layers, d_model], not "
                                    f"{_shape(vectors)}.")
    if not bool(torch.isfinite(vectors).all()):
        bad = sorted({int(i) for i in (~torch.isfinite(vectors)).any(dim=-1).nonzero().flatten().tolist()})
        raise InvalidDirectionError(f"The direction from {source} has NaN or infinite values at layer(s) "
                                    f"{', '.join(map(str, bad[:8]))}{'...' if len(bad) > 8 else ''}: every value "
                                    "must be a finite number; recompute or re-export it.")
    if resid_norms is None:
        return
    if not isinstance(resid_norms, torch.Tensor) or tuple(resid_norms.shape) != (vectors.shape[0],):
        raise InvalidDirectionError(f"The direction from {source} has resid_norms of shape {_shape(resid_norms)}; "
                                    f"they must be one norm per layer, shape [{vectors.shape[0]}].")
    if not bool((torch.isfinite(resid_norms) & (resid_norms >= 0)).all()):
        raise InvalidDirectionError(f"The direction from {source} has resid_norms that are NaN, infinite or "
                                    "negative: each must be a finite norm of at least 0.")


def _shape(value: object) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _safetensors_metadata(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file's content: its header is an 8-byte little-endian length, then JSON."""
    length = int.from_bytes(data[:8], "little")
    if len(data) < 8 or length > len(data) - 8:
        raise ValueError("the header is truncated")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}


REWRITE = "Save the direction again from the playground or a study's --out, and use that file."


def _not_a_direction(name: str, why: object) -> InvalidInputError:
    return InvalidInputError(f"{name} is not a direction file of this project: {str(why).rstrip('.')}. {REWRITE}")
