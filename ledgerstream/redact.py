"""Secrets never reach a log line, at any level.

Settings hold secrets as ``SecretStr`` so that our own code cannot print them by accident, but
third-party libraries log what they are given: at debug level oauthlib and requests-oauthlib
print the NetSuite consumer key, token id, signature base strings and ``Authorization`` headers.
Two measures, installed by the command line before any component starts:

* those libraries' loggers are held at WARNING whatever ``--log-level`` says (what they log
  below that is request signing detail, of no use to an operator);
* every log record, from any logger and whichever handler later writes it (faust installs its
  own), is created through a record factory that replaces every configured secret value, and
  the forms it takes on the wire (percent-encoded, once or twice as in an OAuth 1.0a signature
  base string), with ``***``, in the message, its arguments and any traceback.

A hand-written filter rather than a library: the logging redaction packages on PyPI match
patterns (card numbers, e-mail addresses), not the exact values this process was configured
with, and it is the values that must never appear.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

QUIET_LOGGERS = ("oauthlib", "requests_oauthlib")
MASK = "***"
MIN_LENGTH = 6  # shorter values would mask ordinary words

_secrets: list[str] = []
_installed = False


def forms(value: str) -> set[str]:
    """A secret as it may appear in a log line."""
    once = quote(value, safe="")
    found = {value, once, quote(once, safe="")}
    if "-----BEGIN" in value:  # a PEM key: every line of its body too
        found |= {line.strip() for line in value.splitlines() if len(line.strip()) >= 16}
    return {f for f in found if len(f) >= MIN_LENGTH}


def add(values: Iterable[str | None]) -> None:
    """Mask these values from now on (longest first, so a value inside another stays masked)."""
    known = set(_secrets)
    for value in values:
        if value:
            known |= forms(value)
    _secrets[:] = sorted(known, key=len, reverse=True)


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def install(values: Iterable[str | None]) -> None:
    """Mask ``values`` in every log record from now on; quiet the signing libraries."""
    global _installed
    add(values)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if not _secrets:
            return record
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: leave it to the handler
            return record
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(text)
        return record

    logging.setLogRecordFactory(factory)


def configured_secrets() -> list[str | None]:
    """Every secret the settings of this process hold (those that can be read)."""
    from ledgerstream import settings

    found: list[str | None] = []
    for load in (settings.kafka, settings.stripe, settings.netsuite):
        try:
            cfg = load()
        except (Exception, SystemExit):  # noqa: BLE001 - a component that lacks them says so
            continue
        for name in type(cfg).model_fields:
            found.extend(_values(getattr(cfg, name)))
    return found


def _values(value: Any) -> list[str | None]:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, list | tuple):
        return [v for item in value for v in _values(item)]
    return []
