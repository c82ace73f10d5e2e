"""Units of work (:mod:`quantfid.units.defs`) and the functions that run them
(:mod:`quantfid.units.run`, :mod:`quantfid.units.bench`); the planner
(:mod:`quantfid.units.plan`) turns a command's request into units."""

from quantfid.units.defs import (
    UNIT_VERSION,
    BenchUnit,
    CorpusWindows,
    FidelityUnit,
    PromptSet,
    ReferenceUnit,
    StoredReference,
    Unit,
)
from quantfid.units.run import UnitContext, UnitOutput, commit_output, run_unit

__all__ = [
    "UNIT_VERSION",
    "BenchUnit",
    "CorpusWindows",
    "FidelityUnit",
    "PromptSet",
    "ReferenceUnit",
    "StoredReference",
    "Unit",
    "UnitContext",
    "UnitOutput",
    "commit_output",
    "run_unit",
]
