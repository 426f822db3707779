"""The layout promise: producers/, processors/, sinks/ and schemas/ live at the top of the
checkout and are the packages ledgerstream.producers, .processors, .sinks and .schemas (through
the links in ledgerstream/; pyproject.toml says why). The wheel itself is tested installed, in
tests/integration/test_wheel.py."""

from __future__ import annotations

import importlib

import pytest

from tests import CHECKOUT

FOLDERS = ("producers", "processors", "sinks", "schemas")


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_top_level_folder_is_a_subpackage_of_ledgerstream(folder: str) -> None:
    top = CHECKOUT / folder
    link = CHECKOUT / "ledgerstream" / folder
    assert top.is_dir() and not top.is_symlink()
    assert link.is_symlink() and link.resolve() == top.resolve()
    package = importlib.import_module(f"ledgerstream.{folder}")
    assert package.__file__ is not None
    assert (CHECKOUT / "ledgerstream" / folder / "__init__.py").samefile(package.__file__)


def test_no_other_top_level_folder_holds_product_code() -> None:
    """A new top-level package would install as a top-level module of its own: link it too."""
    packages = {p.parent.name for p in CHECKOUT.glob("*/__init__.py")}
    assert packages - {"tests", "benchmarks", "ledgerstream"} == set(FOLDERS)
