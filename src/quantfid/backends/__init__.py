"""Model runners that turn windows of token ids into log-prob chunks.

- :mod:`quantfid.backends.base`: the ``Backend`` protocol and ``LoadedModel``.
- :mod:`quantfid.backends.hf`: transformers + torch (GGUF files, local directories, hub ids;
  CPU and CUDA; float32 / bfloat16 / float16), ``HFBackend``, tokenizer identity.
- :mod:`quantfid.backends.llamacpp`: llama.cpp through llama-cpp-python (optional extra).
- :mod:`quantfid.backends.tiny`: a tiny random Llama saved to a directory, for tests.
"""
