"""The http backend: quants (or a reference) behind an inference server.

``open_http(spec)`` (registry name ``http``) for a model spec whose source is a server URL
(``http://`` or ``https://``). Dialects: ``vllm`` (``/v1/completions`` with token-id prompts
and ``prompt_logprobs``), ``sglang`` (``/generate`` with ``input_ids`` and, for chosen ids,
``token_ids_logprob``), ``llamacpp`` (llama-cpp-python's server: text prompts, ``echo``,
realigned; see :mod:`quantfid.backends.http.llamacpp_server`). llama.cpp's own llama-server
cannot return prompt log-probs and is refused with the alternatives.

Options (``ModelSpec.options``):

``dialect``       vllm | sglang | llamacpp (default: detected from the server's routes)
``api_key_env``   name of the environment variable holding the API key (sent as a bearer)
``top_k``         log-probs per position (default 20; docs/servers.md says which K gives 10 %
                  and 1 % on the mean KLD)
``concurrency``   requests in flight (default 4)
``timeout_s``     per request (default 300); ``retries`` (default 3) with ``backoff_s``
                  (default 0.5, doubling) on 5xx answers and connection errors
``served_model``  the ``model`` field of requests (default: the server's first model)
``tokenizer``     the model's tokenizer on this side (GGUF file, ``embedded``, model
                  directory or hub id): checked against the server on a probe text, it gives
                  the tokenizer id, vocabulary size, BOS/EOS; required for llama-cpp-python's
                  server (default there: the served model's path when it exists locally)
``verify_tls``    check https certificates (default true)
``chosen_chunk``  SGLang: positions per request when asking for chosen ids (default 16)
``loglik_top_k``  K for continuation scoring (default 1; 1000 for llama-cpp-python's server,
                  which returns a token's own log-prob only among its top K for models
                  without BOS; a continuation token outside them costs one more request,
                  ``LlamaCppPython.next_logprob``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantfid.backends.http.backend import HttpBackend
    from quantfid.models import ModelSpec

__all__ = ["open_http"]


def open_http(spec: ModelSpec) -> HttpBackend:
    """The backend for a server URL spec (detects the dialect, checks the tokenizer, probes
    the model's identity: a few requests)."""
    from quantfid.backends.http.backend import HttpBackend

    return HttpBackend(spec)
