"""Test session set-up.

When integration tests are collected, the real local stack (Kafka broker, Apicurio Registry,
stripe-mock) is started once for the session — or the servers named in the environment are used
— and whatever this session started is stopped at the end. Nothing is skipped: if the stack
cannot start, every integration test errors.
"""

from __future__ import annotations

import os
import re

import pytest

# the local stack's values for the settings production must set (NetSuite set-up ids, the
# Stripe key): the emulator's seeded records and stripe-mock's key
os.environ.setdefault("LEDGER_PROFILE", "local")

_started: list[str] = []
_stack_error: list[BaseException] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.get_closest_marker("integration") for item in session.items):
        return
    from ledgerstream import stack

    try:
        _started.extend(stack.up(echo=lambda line: print(f"[stack] {line}", flush=True)))
        _forget_earlier_runs()
    except BaseException as exc:  # reported by every integration test, not swallowed
        _stack_error.append(exc)


# the topic prefixes tests make up (Pipeline.name, the isolated fixture, the webhook and wheel
# tests): a run id of 8 hex digits
_TEST_TOPIC = re.compile(r"^(run|t|w)[0-9a-f]{8}[.-]")


def _forget_earlier_runs() -> None:
    """Delete the topics earlier test sessions left on the embedded broker.

    Each session adds a few thousand; after three or four full runs a developer's broker (512
    MB heap) ran out of memory answering the clients' requests for all topics' metadata.
    Only when this session started the embedded broker itself: a broker already running may
    serve another session at this moment, whose topics must stay (then a hint is printed)."""
    from ledgerstream import stack, topic_admin

    if any(os.environ.get(var) for var in stack.Kafka.external_env):
        return
    client = topic_admin.admin()
    stale = [t for t in client.list_topics(timeout=30).topics if _TEST_TOPIC.match(t)]
    if not any(name.startswith("kafka") for name in _started):
        if len(stale) > 1000:
            print(
                f"[stack] {len(stale)} topics of test sessions on the running broker; "
                "`ledgerstream stack down --wipe` clears them",
                flush=True,
            )
        return
    for i in range(0, len(stale), 500):
        for future in client.delete_topics(stale[i : i + 500], operation_timeout=60).values():
            future.result()
    if stale:
        print(f"[stack] deleted {len(stale)} topics of earlier test sessions", flush=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _started:
        from ledgerstream import stack

        stack.down(only=_started, echo=lambda line: print(f"[stack] {line}", flush=True))


@pytest.fixture(scope="session")
def local_stack() -> None:
    if _stack_error:
        raise RuntimeError(f"the local stack did not start: {_stack_error[0]}")
