"""The tool version, written into every on-disk format quantfid produces."""

__version__ = "0.1.0"
