"""quantfid: how far a quantized LLM drifts from its reference, and whether that predicts quality.

See the README for the tour; the public API is re-exported here.
"""

from quantfid._version import __version__
from quantfid.errors import QuantfidError
from quantfid.records import Model, Outcome, PromptFidelity
from quantfid.store.workspace import Workspace

__all__ = ["Model", "Outcome", "PromptFidelity", "QuantfidError", "Workspace", "__version__"]
