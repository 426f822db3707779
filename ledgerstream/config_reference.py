"""The configuration reference (``docs/configuration.md``), generated from the settings classes.

``ledgerstream config-reference`` writes it; a test fails when the file in the checkout differs
from what the settings say, so it cannot drift."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ledgerstream import settings

SECTIONS: tuple[tuple[str, type[settings._Base]], ...] = (
    ("Kafka and the Schema Registry", settings.KafkaSettings),
    ("Stripe", settings.StripeSettings),
    ("NetSuite: connection", settings.NetSuiteSettings),
    ("Accounting: the NetSuite set-up and the booking rules", settings.AccountingSettings),
    ("Processor (faust worker)", settings.ProcessorSettings),
    ("NetSuite sink", settings.SinkSettings),
    ("Stripe metadata writer", settings.MetadataSettings),
    ("Metrics, health and logs", settings.ObservabilitySettings),
    ("Local stack (development)", settings.StackSettings),
)

HEADER = """# Configuration reference

Generated from the settings classes (`ledgerstream/settings.py`) by
`ledgerstream config-reference`; a test keeps it current. Every setting is an environment
variable or a line of `.env`; any of them can also come from a file, named by the variable
with `_FILE` appended (`LEDGER_NETSUITE_TOKEN_SECRET_FILE=/run/secrets/ns-token-secret`).
Settings marked **required** have no default: a component that needs one stops at start-up
naming it. `LEDGER_PROFILE=local` fills the required ones with the local stack's values
(the emulator's set-up records and stripe-mock's key); never use it in production.
"""


def _names(name: str, info: FieldInfo) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices]
    return [settings.PREFIX + name.upper()]


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        text = " | ".join(_type(a) for a in kept)
        return text + (" (optional)" if len(kept) < len(args) else "")
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is not None:
        inner = ", ".join(_type(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "computed (see the description)"
    if info.default is PydanticUndefined:
        return "**required**"
    if info.default is None:
        return "unset"
    value = info.default
    if isinstance(value, SecretStr):
        return "unset"
    if isinstance(value, dict | list | tuple) or value == "":
        return f"`{json.dumps(value, default=str)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    out = [HEADER]
    for title, cls in SECTIONS:
        out.append(f"## {title}\n")
        doc = " ".join((cls.__doc__ or "").split())
        if doc:
            out.append(doc + "\n")
        out.append("| Variable | Type | Default | What it does |")
        out.append("|---|---|---|---|")
        for name, info in cls.model_fields.items():
            variables = " or ".join(f"`{n}`" for n in _names(name, info))
            out.append(
                f"| {variables} | {_cell(_type(info.annotation))} | {_cell(_default(info))} "
                f"| {_cell(info.description or '')} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"
