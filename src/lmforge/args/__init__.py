"""Command-line flags: small groups composed per command, and a light parser (no torch, no transformers)."""

from lmforge.args.groups import CheckArgs, DataArgs, ModelArgs, TemplateArgs, TrainArgs, TunerArgs
from lmforge.args.parser import Args, format_help, parse_flags

__all__ = [
    "Args",
    "CheckArgs",
    "DataArgs",
    "ModelArgs",
    "TemplateArgs",
    "TrainArgs",
    "TunerArgs",
    "format_help",
    "parse_flags",
]
