"""Test session set-up.

When integration tests are collected, the real local stack (Kafka broker, Apicurio Registry,
stripe-mock) is started once for the session — or the servers named in the environment are used
— and whatever this session started is stopped at the end. Nothing is skipped: if the stack
cannot start, every integration test errors.
"""

from __future__ import annotations

import os

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
    except BaseException as exc:  # reported by every integration test, not swallowed
        _stack_error.append(exc)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _started:
        from ledgerstream import stack

        stack.down(only=_started, echo=lambda line: print(f"[stack] {line}", flush=True))


@pytest.fixture(scope="session")
def local_stack() -> None:
    if _stack_error:
        raise RuntimeError(f"the local stack did not start: {_stack_error[0]}")
