"""A recipe names how every weight of a model is quantized.

A scheme (the per-tensor choice) is one of:

- a GGML type name (``Q4_K``, ``IQ4_NL`` ...): llama.cpp's quantizer through libgguf; a type
  whose block does not divide the row falls back as llama.cpp does;
- an RTN configuration (``rtn-w4g64-asym``, see :mod:`quantfid.quantize.rtn`);
- ``F16`` (rounded to float16) or ``F32`` (kept as is).

A recipe starts from a llama.cpp preset (``preset``, optionally ``pure``) or from ``default``,
then applies its ``rules`` in order (the first rule whose regex matches the tensor's GGUF
name, or its HF name when it has none, and whose layer range holds its layer, wins).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from quantfid.errors import QuantfidError
from quantfid.quantize.ggml import GGML_TYPES, fallback_type, ggml_type
from quantfid.quantize.names import ModelShape, TensorInfo
from quantfid.quantize.presets import preset_types, requires_imatrix
from quantfid.quantize.rtn import RTNConfig

FLOAT_SCHEMES = ("F16", "F32")


def scheme_bytes(scheme: str, t: TensorInfo) -> float:
    """Bytes of tensor ``t`` stored with ``scheme``."""
    rows, n = t.shape
    if scheme == "F32":
        return 4.0 * rows * n
    if scheme == "F16":
        return 2.0 * rows * n
    if scheme.startswith("rtn-"):
        return RTNConfig.parse(scheme).n_bytes(rows, n)
    return float(rows * ggml_type(scheme).row_bytes(n))


def check_scheme(scheme: str) -> None:
    """QuantfidError unless ``scheme`` is a known scheme."""
    if scheme in FLOAT_SCHEMES or scheme in GGML_TYPES:
        return
    if scheme.startswith("rtn-"):
        RTNConfig.parse(scheme)
        return
    raise QuantfidError(f"unknown quantization scheme {scheme!r}: a GGML type "
                        f"({', '.join(GGML_TYPES)}), rtn-w<bits>g<group>-<sym|asym>, F16 or F32")


@dataclass(frozen=True)
class Rule:
    """Tensors whose name matches ``pattern`` (regex search) in layers [first, last) use ``scheme``."""

    pattern: str
    scheme: str
    layers: tuple[int, int] | None = None

    def matches(self, t: TensorInfo) -> bool:
        if self.layers is not None and (t.layer is None or not self.layers[0] <= t.layer < self.layers[1]):
            return False
        return re.search(self.pattern, t.gguf or t.name) is not None


@dataclass(frozen=True)
class Recipe:
    """A named quantization recipe (see the module docstring)."""

    name: str
    description: str
    rules: tuple[Rule, ...] = ()
    preset: str | None = None
    pure: bool = False
    default: str = "F32"

    def __post_init__(self) -> None:
        check_scheme(self.default)
        for r in self.rules:
            check_scheme(r.scheme)

    def type_map(self, shape: ModelShape, has_imatrix: bool = False) -> dict[str, str]:
        """HF tensor name -> scheme, fallbacks applied."""
        base = (preset_types(self.preset, shape, has_imatrix, pure=self.pure)
                if self.preset else {t.name: self.default for t in shape.tensors})
        out: dict[str, str] = {}
        for t in shape.tensors:
            scheme = next((r.scheme for r in self.rules if r.matches(t)), base[t.name])
            if scheme in GGML_TYPES:
                scheme = fallback_type(scheme, t.n_per_row)
            out[t.name] = scheme
        return out

    def needs_imatrix(self, shape: ModelShape) -> list[str]:
        """Tensors (HF names) whose type requires an importance matrix (llama.cpp's rule),
        for the type map chosen without one."""
        types = self.type_map(shape, has_imatrix=False)
        return [t.name for t in shape.tensors
                if types[t.name] in GGML_TYPES and requires_imatrix(self.preset, t, types[t.name])]

    def uses_imatrix(self, shape: ModelShape) -> bool:
        """Whether an importance matrix changes this recipe (every GGML type can use one)."""
        return any(s in GGML_TYPES for s in self.type_map(shape).values())

    def bits_per_weight(self, shape: ModelShape, has_imatrix: bool = False) -> float:
        """Quantized weight bits / weight elements over every parameter (the tied embedding
        once; float parameters such as norms at 32 bits)."""
        types = self.type_map(shape, has_imatrix)
        total = sum(scheme_bytes(types[t.name], t) for t in shape.tensors) + 4.0 * shape.other_params
        n = sum(t.numel for t in shape.tensors) + shape.other_params
        return 8.0 * total / n

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "preset": self.preset,
                "pure": self.pure, "default": self.default,
                "rules": [{"pattern": r.pattern, "scheme": r.scheme,
                           "layers": list(r.layers) if r.layers else None} for r in self.rules]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Recipe:
        try:
            rules = tuple(Rule(r["pattern"], r["scheme"], tuple(r["layers"]) if r.get("layers") else None)
                          for r in obj.get("rules", []))
            return cls(name=obj["name"], description=obj.get("description", ""), rules=rules,
                       preset=obj.get("preset"), pure=bool(obj.get("pure", False)),
                       default=obj.get("default", "F32"))
        except (KeyError, TypeError) as e:
            raise QuantfidError(f"not a recipe: missing or bad field {e}") from e
