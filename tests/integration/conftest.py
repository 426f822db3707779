from __future__ import annotations

import collections.abc
from pathlib import Path

import pytest

from ledgerstream import settings
from ledgerstream.pipeline import Pipeline
from tests.integration.helpers import ACCOUNTING_ENV


@pytest.fixture
def pipeline(tmp_path: Path) -> collections.abc.Iterator[Pipeline]:
    """A fresh pipeline (own topics, groups, ports, emulator data), stopped afterwards."""
    pipe = Pipeline(tmp_path / "run")
    yield pipe
    pipe.stop()


@pytest.fixture
def pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> collections.abc.Iterator[Pipeline]:
    """A fresh pipeline whose topics exist, with this process's Kafka clients on its prefix."""
    pipeline = Pipeline(tmp_path / "run", extra_env=dict(ACCOUNTING_ENV))
    monkeypatch.setenv("LEDGER_TOPIC_PREFIX", pipeline.prefix)
    settings.kafka.cache_clear()
    pipeline.cli("topics")
    yield pipeline
    pipeline.stop()
    settings.kafka.cache_clear()
