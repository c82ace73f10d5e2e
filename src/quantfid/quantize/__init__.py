"""Build a cohort of quants from a torch reference: GGML types, RTN, mixed recipes.

Public API: :func:`get_recipe`, :func:`list_recipes`, :data:`DEFAULT_COHORT`,
:func:`quantize_model` (in place) -> :class:`QuantReport`, :class:`Recipe`, importance
matrices (:func:`compute_imatrix`, :func:`load_imatrix`) and writers (:func:`write_gguf`,
:func:`write_safetensors`).
"""

from quantfid.quantize.apply import QuantCache, QuantReport, quantize_model, quantize_tensor
from quantfid.quantize.build import build_cohort
from quantfid.quantize.export import write_gguf, write_safetensors
from quantfid.quantize.imatrix import Imatrix, compute_imatrix, load_imatrix
from quantfid.quantize.names import ModelShape, TensorInfo, model_shape
from quantfid.quantize.recipe import Recipe, Rule
from quantfid.quantize.recipes import DEFAULT_COHORT, get_recipe, list_recipes, resolve_recipes

__all__ = [
    "DEFAULT_COHORT",
    "Imatrix",
    "ModelShape",
    "QuantCache",
    "QuantReport",
    "Recipe",
    "Rule",
    "TensorInfo",
    "build_cohort",
    "compute_imatrix",
    "get_recipe",
    "list_recipes",
    "load_imatrix",
    "model_shape",
    "quantize_model",
    "quantize_tensor",
    "resolve_recipes",
    "write_gguf",
    "write_safetensors",
]
