"""Write a quant to disk: a GGUF llama.cpp can serve, or safetensors plus its recipe JSON.

GGUF: GGML-typed tensors are written as their quantized bytes (what was measured, bit for
bit); RTN and float schemes as float32 / float16 values. ``attn_q`` / ``attn_k`` rows are
permuted to llama.cpp's rotary layout (the inverse of what transformers' GGUF loader undoes).
Metadata (architecture, tokenizer, chat template...) is copied from the reference GGUF when
there is one; otherwise the Llama architecture keys are written from the config (no
tokenizer: serve it with a tokenizer from elsewhere).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantfid.atomic import write_json
from quantfid.errors import QuantfidError
from quantfid.quantize.apply import QuantReport
from quantfid.quantize.ggml import GGML_TYPES
from quantfid.quantize.names import gguf_name
from quantfid.quantize.recipe import Recipe

_SKIP_KEYS = ("GGUF.", "general.architecture", "general.file_type", "general.quantization_version")


def _publish(tmp: str, target: Path) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes it 0600) and move
    it onto ``target`` atomically."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


def rope_permutation(rows: int, n_head: int) -> np.ndarray:
    """Row order llama.cpp's converter gives attn_q / attn_k (``gguf_rows = hf_rows[perm]``)."""
    idx = np.arange(rows)
    return idx.reshape(n_head, 2, rows // n_head // 2).swapaxes(1, 2).reshape(rows)


@functools.lru_cache(maxsize=4)
def gguf_metadata(reference: Path) -> tuple[tuple[str, Any, Any, Any], ...]:
    """(key, value, type, array item type) of every metadata field of a GGUF worth copying
    into a quant of it (read once per process: gguf-py's reader takes seconds on a vocab)."""
    import gguf

    r = gguf.GGUFReader(reference)
    out = []
    for key, f in r.fields.items():
        if key.startswith(_SKIP_KEYS):
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(f.types) > 1 else None
        out.append((key, f.contents(), vtype, sub))
    return tuple(out)


def _copy_metadata(writer: Any, reference: Path, prefix: str = "") -> None:
    for key, value, vtype, sub in gguf_metadata(reference.resolve()):
        if key.startswith(prefix):
            writer.add_key_value(key, value, vtype, sub_type=sub)


def _config_metadata(writer: Any, cfg: Any) -> None:
    writer.add_block_count(int(cfg.num_hidden_layers))
    writer.add_context_length(int(getattr(cfg, "max_position_embeddings", 2048)))
    writer.add_embedding_length(int(cfg.hidden_size))
    writer.add_feed_forward_length(int(cfg.intermediate_size))
    writer.add_head_count(int(cfg.num_attention_heads))
    writer.add_head_count_kv(int(getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    writer.add_rope_freq_base(float(theta))
    writer.add_vocab_size(int(cfg.vocab_size))
    writer.add_rope_dimension_count(int(cfg.hidden_size // cfg.num_attention_heads))


def write_gguf(path: str | Path, module: torch.nn.Module, report: QuantReport,
               reference_gguf: str | Path | None = None,
               tokenizer_gguf: str | Path | None = None) -> Path:
    """Write the quantized ``module`` as a GGUF (Llama architecture).

    report: from ``quantize_model(..., keep_data=True)`` (it holds the GGML bytes).
    reference_gguf: copy every metadata field from it (a quant of that file). Without it the
    architecture keys come from the config, and the tokenizer keys from ``tokenizer_gguf``
    when given (a model of another shape that shares a tokenizer).
    """
    import gguf

    if report.data is None:
        raise QuantfidError("write_gguf needs the quantized bytes: quantize with keep_data=True")
    cfg = getattr(module, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama":
        raise QuantfidError("GGUF export supports Llama-architecture models; use --format safetensors")
    n_head = int(cfg.num_attention_heads)
    n_kv = int(getattr(cfg, "num_key_value_heads", n_head))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        if reference_gguf is not None:
            _copy_metadata(writer, Path(reference_gguf))
        else:
            writer.add_name(f"quantfid {report.recipe}")
            _config_metadata(writer, cfg)
            if tokenizer_gguf is not None:
                _copy_metadata(writer, Path(tokenizer_gguf), prefix="tokenizer.")
        writer.add_file_type(int(gguf.LlamaFileType.GUESSED))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_string("quantfid.recipe", report.recipe)
        writer.add_float32("quantfid.bits_per_weight", float(report.bits_per_weight))
        writer.add_string("quantfid.hash", report.hash)
        for name, p in module.named_parameters():
            g = gguf_name(name)
            if g is None:
                raise QuantfidError(f"no GGUF name for parameter {name}")
            scheme = report.types.get(name, "F32")
            perm = None
            if ".attn_q." in g:
                perm = rope_permutation(p.shape[0], n_head)
            elif ".attn_k." in g:
                perm = rope_permutation(p.shape[0], n_kv)
            if scheme in GGML_TYPES:
                raw = report.data[name]
                raw = raw[perm] if perm is not None else raw
                writer.add_tensor(g, np.ascontiguousarray(raw), raw_shape=raw.shape,
                                  raw_dtype=gguf.GGMLQuantizationType[scheme])
            else:
                arr = p.detach().to(torch.float32).cpu().numpy()
                arr = arr[perm] if perm is not None else arr
                arr = arr.astype(np.float16) if scheme == "F16" else np.ascontiguousarray(arr)
                writer.add_tensor(g, arr)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
        writer.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _publish(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def write_safetensors(out_dir: str | Path, module: torch.nn.Module, report: QuantReport,
                      recipe: Recipe) -> Path:
    """Write the dequantized weights (float32 safetensors, tied weights once), the model
    config and ``recipe.json`` (recipe + report) into ``out_dir``."""
    from safetensors.torch import save_file

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().to(torch.float32).cpu().contiguous() for n, p in module.named_parameters()}
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"quantfid.recipe": recipe.name, "format": "pt"})
        _publish(tmp, d / "model.safetensors")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    cfg = getattr(module, "config", None)
    if cfg is not None:
        write_json(d / "config.json", cfg.to_dict())
    write_json(d / "recipe.json", {"recipe": recipe.to_json(), "report": report.to_json()})
    return d
