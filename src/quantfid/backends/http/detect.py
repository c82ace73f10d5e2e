"""Which server answers at a URL: SGLang, vLLM, llama-cpp-python's server, or one quantfid
cannot measure (llama.cpp's own ``llama-server``)."""

from __future__ import annotations

from typing import Any

from quantfid.backends.http.client import HttpClient, ServerError
from quantfid.backends.http.dialect import Dialect
from quantfid.backends.http.llamacpp_server import LlamaCppPython
from quantfid.backends.http.sglang import SGLang
from quantfid.backends.http.vllm import VLLM
from quantfid.errors import QuantfidError

DIALECTS: dict[str, type[Dialect]] = {"vllm": VLLM, "sglang": SGLang, "llamacpp": LlamaCppPython}

LLAMA_SERVER = ("llama.cpp's llama-server returns no prompt log-probs (its /v1/completions "
                "refuses echo), so it cannot be measured; serve the GGUF with llama-cpp-python's "
                "server (pip install 'llama-cpp-python[server]'; python -m llama_cpp.server "
                "--model FILE --n_ctx N --flash_attn true), or with vLLM or SGLang, or measure "
                "it in-process with --backend llamacpp")


def _try(client: HttpClient, method: str, path: str, body: dict[str, Any] | None = None
         ) -> Any | None:
    """The JSON answer, or None when the route does not exist or answers with a 4xx."""
    try:
        return client.request(method, path, body, "detecting the server")
    except ServerError as e:
        if e.status is not None and e.status < 500:
            return None
        raise


def detect_dialect(client: HttpClient) -> str:
    """The dialect name; QuantfidError for llama-server or an unknown server."""
    info = _try(client, "GET", "/get_model_info")
    if isinstance(info, dict) and "model_path" in info:
        return "sglang"
    models = _try(client, "GET", "/v1/models")
    owner = None
    if isinstance(models, dict) and isinstance(models.get("data"), list) and models["data"]:
        first = models["data"][0]
        owner = first.get("owned_by") if isinstance(first, dict) else None
    if owner == "vllm":
        return "vllm"
    if owner == "llamacpp" or isinstance(_try(client, "GET", "/props"), dict):
        raise QuantfidError(f"{client.base_url}: {LLAMA_SERVER}")
    if models is not None and isinstance(_try(client, "POST", "/extras/tokenize",
                                              {"input": "a"}), dict):
        return "llamacpp"
    raise QuantfidError(f"cannot tell which server answers at {client.base_url} (not SGLang, "
                        "vLLM or llama-cpp-python's server by their routes); set option "
                        f"dialect to one of {', '.join(DIALECTS)}")
