"""Command-line flags generated from a config dataclass, so a default lives only in its field.

    @dataclass(frozen=True)
    class TrainConfig:
        lr: float = opt(2e-3, "peak learning rate")

    add_arguments(parser, TrainConfig)           # --lr (default 2e-3, from the field)
    cfg = from_arguments(TrainConfig, args)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any


def opt(default: Any, help: str = "", *, choices: typing.Sequence[str] | None = None, machine: bool = False) -> Any:
    """A dataclass field with the flag's help text (and choices) beside its default.

    `machine`: the option chooses what runs, what is read from disk or where code and keys
    are sent, so only the user may set it, never a workspace (VS Code scope "machine")."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults: dataclass fields must be immutable")
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "machine": machine})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=default,
                                help=help_text + " (default: %(default)s)")
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            parser.add_argument(_flag(f.name), nargs="*", type=item, default=default, choices=choices,
                                help=help_text + " (default: %(default)s)")
        else:
            kind = next((t for t in typing.get_args(hint) if t is not type(None)), None) or hint
            parser.add_argument(_flag(f.name), type=kind, default=default, choices=choices,
                                help=help_text + " (default: %(default)s)")


def from_arguments(cls: type, args: argparse.Namespace, **overrides: Any):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    for f in dataclasses.fields(cls):
        if isinstance(f.default, tuple) and isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    return cls(**{**values, **overrides})
