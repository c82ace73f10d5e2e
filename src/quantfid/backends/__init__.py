"""Model runners that turn windows of token ids into log-prob chunks."""
