"""User-facing errors: the CLI prints their message and exits with status 2, no traceback."""


class QuantfidError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it."""


class FormatError(QuantfidError):
    """A file is not in the format it claims, or in a version this tool cannot read."""


class MismatchError(QuantfidError):
    """Two inputs that must agree (tokens, tokenizer, vocab, prompt sets, reference) do not."""
