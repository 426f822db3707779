from __future__ import annotations

import collections.abc
import re
from pathlib import Path

import pytest

from ledgerstream import settings, topic_admin
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.testing.generator import History
from ledgerstream.testing.pipeline import RUN_IDS, AppThread, Pipeline, new_run_id
from ledgerstream.testing.stripe_double import StripeDouble
from tests.integration.helpers import ACCOUNTING_ENV

# a test run's topics: <run id>.<topic>, and its processor's <run id>-processor-<table>-changelog
_RUN_ID = re.compile(r"^((?:run|t|w)[0-9a-f]{8})[.-]")


@pytest.fixture(autouse=True)
def _topics_deleted_afterwards() -> collections.abc.Iterator[None]:
    """Every topic a test created is deleted when it ends (after its pipeline stopped: autouse
    fixtures are set up first, so torn down last). The suite creates about 180 runs of about
    85 partitions each; kept, they filled the local broker's 512 MB heap near the end of a CI
    run (stop 20: java.lang.OutOfMemoryError, then "Broker transport failure" in the last 31
    tests), and a broker restarted on them could not even load them."""
    client = topic_admin.admin()
    before = set(client.list_topics(timeout=10).topics)
    yield
    after = set(client.list_topics(timeout=10).topics)
    # only this process's runs: another session (a demo, a benchmark, a second pytest) may
    # create topics on the same broker meanwhile, and must keep them
    mine = [t for t in after - before if (m := _RUN_ID.match(t)) and m.group(1) in RUN_IDS]
    topic_admin.delete(client, sorted(mine))


@pytest.fixture
def pipeline(tmp_path: Path) -> collections.abc.Iterator[Pipeline]:
    """A fresh pipeline (own topics, groups, ports, emulator data), stopped afterwards."""
    pipe = Pipeline(tmp_path / "run")
    yield pipe
    pipe.stop()


@pytest.fixture
def emulator(pipeline: Pipeline) -> Pipeline:
    """The NetSuite emulator alone, started and answering."""
    pipeline.start("emulator", "emulator", "netsuite")
    pipeline.wait_http(f"{pipeline.emulator_url}/_emulator/records", "emulator")
    return pipeline


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


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> collections.abc.Iterator[str]:
    """A fresh topic prefix for this test, with its topics created."""
    prefix = f"{new_run_id('t')}."
    monkeypatch.setenv("LEDGER_TOPIC_PREFIX", prefix)
    for cached in (settings.kafka, settings.stripe):
        cached.cache_clear()
    topic_admin.ensure_all()
    yield prefix
    for cached in (settings.kafka, settings.stripe):
        cached.cache_clear()


@pytest.fixture
def served(history: History) -> collections.abc.Iterator[tuple[StripeDouble, str]]:
    """The module's history served by a Stripe double: the double and its URL."""
    fake = StripeDouble(history)
    server = AppThread(fake.app())
    yield fake, server.url
    server.close()


@pytest.fixture
def double(served: tuple[StripeDouble, str]) -> StripeDouble:
    return served[0]


@pytest.fixture
def boot(served: tuple[StripeDouble, str]) -> Bootstrap:
    """The components' clients, with Stripe's pointed at the double (injected, not patched)."""
    return double_boot(served[1])


def double_boot(url: str) -> Bootstrap:
    return Bootstrap(
        stripe=settings.StripeSettings(stripe_api_base=url, stripe_max_requests_per_s=1000)
    )
