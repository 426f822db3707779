"""No configured secret reaches a log line, in any form, from any logger, at any level."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

from ledgerstream import redact


def test_secrets_are_masked_in_messages_arguments_encodings_and_tracebacks() -> None:
    secret = "tok+en/Secret=42-distinctive"
    redact.install([secret, None, "short"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("Authorization: OAuth oauth_token=%s", quote(secret, safe=""))
        logger.debug("base string: %s", quote(quote(secret, safe=""), safe=""))
        logger.info("plain %s and %r", secret, {"key": secret})
        try:
            raise RuntimeError(f"refused {secret}")
        except RuntimeError:
            logger.exception("failed")
        logger.info("nothing secret here: short words stay")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert secret not in out
    assert quote(secret, safe="") not in out
    assert quote(quote(secret, safe=""), safe="") not in out
    assert out.count("***") == 5
    assert "RuntimeError: refused ***" in out  # the traceback is kept, masked
    assert "short words stay" in out  # values under the minimum length are not masked


def test_the_signing_libraries_stay_quiet_at_debug_level() -> None:
    redact.install([])
    logging.getLogger().setLevel(logging.DEBUG)
    for name in redact.QUIET_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)
