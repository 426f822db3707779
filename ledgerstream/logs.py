"""Bounded logging during an outage: one line per kind of message per interval.

While a broker is down the Kafka clients report every reconnect attempt: aiokafka logs
``Unable connect to node …`` several times a second per connection (a faust worker wrote 466
such lines in 14 s, 51,646 ERROR lines in a 13-minute outage), and librdkafka prints a ``FAIL``
line per attempt. That buries the one line an operator needs.

``RepeatLimiter`` lets the first warning or error of each kind through (kind: logger and message
template, so ``Unable connect to node with id %s`` is one kind whatever the node), drops the
repeats for ``every_s`` seconds, and notes on the next line it lets through how many it dropped.
It is installed on the client libraries' loggers (``install``), and librdkafka's own log lines
are routed to the ``librdkafka`` logger (see ``KafkaSettings.client_config``) so the same limit
applies to them. (No library here does this: the standard library has no rate-limited filter,
and the PyPI ones are unmaintained one-file packages.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

EVERY_S = 10.0

# loggers of the Kafka clients that report each reconnect attempt during an outage
CLIENT_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.client",
    "aiokafka.cluster",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
    "aiokafka.producer.producer",
    "librdkafka",
)


class RepeatLimiter(logging.Filter):
    """Pass the first record of a kind, drop its repeats for ``every_s``, then count them."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._lock = threading.Lock()  # the clients log from their own threads
        self._last: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            # only warnings and errors flood during an outage; informational lines (a new
            # partition assignment, a coordinator found) are rare and must all be seen
            return True
        kind = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every_s:
                self._dropped[kind] = self._dropped.get(kind, 0) + 1
                return False
            self._last[kind] = now
            dropped = self._dropped.pop(kind, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} more like this in the last {self.every_s:.0f}s]"
        return True


_installed = RepeatLimiter()


def install(names: tuple[str, ...] = CLIENT_LOGGERS) -> RepeatLimiter:
    """Put the one shared limiter on each named logger (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if _installed not in logger.filters:
            logger.addFilter(_installed)
    return _installed


# the component this process runs (the router, the NetSuite sink…), in every structured line
COMPONENT = {"name": "ledgerstream"}


class _Component(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.component = COMPONENT["name"]
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line (``LEDGER_LOG_FORMAT=json``): time (ISO 8601, UTC), level,
    logger, message, component, and the context a line was logged with (topic, partition,
    offset, stripe_id, netsuite_record). Messages never carry payloads; configured secrets
    are masked before any formatter sees a record (``ledgerstream.redact``)."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(component)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def use_json(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        handler.setFormatter(json_formatter())
        if not any(isinstance(f, _Component) for f in handler.filters):
            handler.addFilter(_Component())


def dict_config(level: str) -> dict[str, object]:
    """The same, as a ``logging.config`` dictionary (faust's worker sets up logging with one)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"component": {"()": _Component}},
        "formatters": {"json": {"()": json_formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["component"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }
