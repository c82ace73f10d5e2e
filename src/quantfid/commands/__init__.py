"""CLI subcommands, one module each; see ``quantfid.cli``."""
