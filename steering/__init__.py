"""The steering library: model pairs, residual-stream interventions, directions and generation. No Streamlit."""
from .quiet import silence_hub_kernel_warning

silence_hub_kernel_warning()  # before anything imports bitsandbytes (peft does)

from .directions import Direction, DirectionInfo
from .errors import (AdapterMissingError, BadFileError, IncompatibleDirectionError, InsufficientMemoryError,
                     InvalidInputError, LayerOutOfRangeError, ModelNotAvailableError, SteeringError, UnknownPairError,
                     UnsupportedArchitectureError)
from .extraction import collect_residuals, diff_in_means
from .interventions import ablate, add, hooks, patch, record
from .model_view import ModelView
from .pairs import LoadSettings, ModelPair, load_model, load_pair
from .registry import pair_names, pair_spec

__all__ = [
    "AdapterMissingError", "BadFileError", "Direction", "DirectionInfo", "IncompatibleDirectionError",
    "InsufficientMemoryError", "InvalidInputError", "LayerOutOfRangeError", "LoadSettings", "ModelNotAvailableError",
    "ModelPair", "ModelView", "SteeringError", "UnknownPairError", "UnsupportedArchitectureError", "ablate", "add",
    "collect_residuals", "diff_in_means", "hooks", "load_model", "load_pair", "pair_names", "pair_spec", "patch",
    "record",
]
