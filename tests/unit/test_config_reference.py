"""The configuration reference in docs/ is what the settings classes say, for every setting."""

from __future__ import annotations

from pathlib import Path

from ledgerstream import settings
from ledgerstream.config_reference import SECTIONS, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_settings_class_and_field_is_in_the_reference_with_a_description() -> None:
    classes = {
        cls
        for cls in vars(settings).values()
        if isinstance(cls, type) and issubclass(cls, settings._Base) and cls is not settings._Base
    }
    assert classes == {cls for _, cls in SECTIONS}
    text = render()
    for _, cls in SECTIONS:
        for name, info in cls.model_fields.items():
            assert info.description, f"{cls.__name__}.{name} has no description"
            assert f"`{settings.PREFIX}{name.upper()}`" in text or info.validation_alias


def test_the_reference_in_docs_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is out of date: run `ledgerstream config-reference "
        "--output docs/configuration.md`"
    )
