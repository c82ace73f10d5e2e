"""On-disk formats: the workspace, reference log-prob stores, llama.cpp's kld-base file."""
