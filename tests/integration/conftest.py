from __future__ import annotations

import collections.abc
from pathlib import Path

import pytest

from ledgerstream.pipeline import Pipeline


@pytest.fixture
def pipeline(tmp_path: Path) -> collections.abc.Iterator[Pipeline]:
    """A fresh pipeline (own topics, groups, ports, emulator data), stopped afterwards."""
    pipe = Pipeline(tmp_path / "run")
    yield pipe
    pipe.stop()
