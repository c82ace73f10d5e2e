"""Build a cohort: quantize a reference with each recipe and write every quant.

``DIR/cohort.json`` lists each recipe's report and its :class:`quantfid.records.Model` record;
a quant whose file exists with the same content hash (type map, reference, imatrix) is kept,
so an interrupted build resumes.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from quantfid.atomic import write_json
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_array
from quantfid.progress import track
from quantfid.quantize.apply import QuantCache, quant_hash, quantize_model
from quantfid.quantize.export import write_gguf, write_safetensors
from quantfid.quantize.imatrix import Imatrix, load_imatrix
from quantfid.quantize.names import model_shape
from quantfid.quantize.recipes import resolve_recipes
from quantfid.quantize.reference import gguf_source
from quantfid.records import Model

FORMAT_VERSION = 1


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise QuantfidError(f"{path}: unreadable cohort manifest: {e}") from e
    return {e["recipe"]: e for e in data.get("quants", []) if "recipe" in e}


def _reference_gguf(info: Model) -> Path | None:
    """The GGUF file the loaded reference came from (its metadata and tokenizer are copied)."""
    if info.format != "gguf":
        return None
    if info.source.startswith("embedded:"):
        return gguf_source(None)
    return Path(info.source)


def build_cohort(reference: str | None, recipes: str, out_dir: Path, fmt: str = "gguf",
                 imatrix_path: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Quantize ``reference`` with each recipe of ``recipes`` (``default`` or NAME,NAME) and
    write the quants to ``out_dir`` as ``fmt`` (``gguf`` or ``safetensors``)."""
    import torch

    from quantfid import __version__
    from quantfid.backends.hf import load_hf

    if fmt not in ("gguf", "safetensors"):
        raise QuantfidError(f"unknown format {fmt!r}; choose gguf or safetensors")
    chosen = resolve_recipes(recipes)
    im: Imatrix | None = load_imatrix(imatrix_path) if imatrix_path else None
    lm = load_hf(reference, role="reference")
    ref = lm.module.to(torch.device("cpu"))
    ref_hash = lm.info.hash or hash_array(
        torch.cat([p.detach().flatten().float() for p in ref.parameters()]).numpy())
    shape = model_shape(ref)
    if fmt == "gguf" and getattr(getattr(ref, "config", None), "model_type", None) != "llama":
        raise QuantfidError("GGUF export supports Llama-architecture models; use --format safetensors")
    src_gguf = _reference_gguf(lm.info)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "cohort.json"
    previous = _read_manifest(manifest_path)
    cache = QuantCache()
    work: Any = None        # one working copy, re-filled from the reference by every recipe
    results: list[dict[str, Any]] = []
    for recipe in track(chosen, total=len(chosen), desc="cohort", unit="quant") if progress else chosen:
        need = recipe.needs_imatrix(shape) if im is None else []
        if need:
            results.append({"recipe": recipe.name, "status": "unavailable",
                            "reason": f"needs an importance matrix for {len(need)} tensors "
                                      f"(e.g. {need[0]}): run `quantfid cohort imatrix`"})
            continue
        types = recipe.type_map(shape, has_imatrix=im is not None)
        h = quant_hash(types, ref_hash, im.hash if im else None)
        path = out_dir / (f"{recipe.name}.gguf" if fmt == "gguf" else recipe.name)
        old = previous.get(recipe.name)
        if old and old.get("hash") == h and old.get("format") == fmt and path.exists():
            results.append({**old, "status": "kept", "seconds": 0.0})
            continue
        t0 = time.perf_counter()
        if work is None:
            work = copy.deepcopy(ref)
        rep = quantize_model(work, recipe, im, cache=cache, reference_hash=ref_hash,
                             keep_data=fmt == "gguf", progress=progress, shape=shape, source=ref)
        if fmt == "gguf":
            write_gguf(path, work, rep, reference_gguf=src_gguf)
        else:
            write_safetensors(path, work, rep, recipe)
        model = Model(id=recipe.name, role="quant", source=f"recipe:{recipe.name}@{lm.info.id}",
                      format=fmt, scheme=recipe.name, bits_per_weight=rep.bits_per_weight,
                      bytes=rep.bytes, hash=rep.hash)
        results.append({"recipe": recipe.name, "status": "built", "path": str(path), "format": fmt,
                        "seconds": time.perf_counter() - t0, "bits_per_weight": rep.bits_per_weight,
                        "hash": rep.hash, "report": rep.to_json(), "model": model.to_dict(),
                        "recipe_json": recipe.to_json()})
        _write_manifest(manifest_path, lm.info.id, ref_hash, im, results, previous, __version__)
    _write_manifest(manifest_path, lm.info.id, ref_hash, im, results, previous, __version__)
    return results


def _write_manifest(path: Path, ref_id: str, ref_hash: str, im: Imatrix | None,
                    results: list[dict[str, Any]], previous: dict[str, Any], version: str) -> None:
    done = {r["recipe"]: r for r in results if r["status"] in ("built", "kept")}
    keep = {k: v for k, v in previous.items() if k not in done}
    quants = [{k: v for k, v in e.items() if k not in ("status", "seconds")}
              for e in [*keep.values(), *done.values()]]
    write_json(path, {"format_version": FORMAT_VERSION, "tool": f"quantfid {version}",
                      "reference": {"id": ref_id, "hash": ref_hash},
                      "imatrix": None if im is None else {"hash": im.hash, **im.meta},
                      "quants": quants})
