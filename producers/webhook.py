"""Stripe webhook receiver (aiohttp).

``POST /webhooks/stripe``: the raw body's ``Stripe-Signature`` is verified with the stripe SDK
against every configured endpoint secret (rotation), then the event is published and the
request answered **200 only after the broker acknowledged it**.

Answers: 400 bad/missing signature, stale timestamp, body not JSON or not an event;
413 body over the limit; 200 ``{"ignored": true}`` for event types the pipeline does not use;
503 when the broker did not acknowledge (Stripe retries). ``/healthz`` (process up) and
``/readyz`` (broker reachable) for orchestration.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import stripe
from aiohttp import web

from ledgerstream import logs, metrics, settings
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers.publisher import EventPublisher, PublishError
from ledgerstream.stripe_records import BadEvent

log = logging.getLogger(__name__)

MAX_BODY = 512 * 1024  # Stripe events are well under this; larger bodies get 413
PUBLISHER = web.AppKey("publisher", EventPublisher)
STRIPE = web.AppKey("stripe", settings.StripeSettings)


def verify(body: bytes, header: str | None, secrets: list[str], tolerance: int) -> None:
    """Raise ``stripe.SignatureVerificationError`` unless one secret verifies the body."""
    if not secrets:
        raise stripe.SignatureVerificationError("no webhook secret is configured", header)
    last: Exception | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance)
            return
        except stripe.SignatureVerificationError as exc:
            last = exc
        except UnicodeDecodeError as exc:
            raise stripe.SignatureVerificationError("body is not UTF-8", header) from exc
    assert last is not None
    raise last


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def handle_webhook(request: web.Request) -> web.Response:
    cfg = request.app[STRIPE]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.WEBHOOKS.labels("too_large").inc()
        return _problem(413, f"body larger than {MAX_BODY} bytes")
    secrets = [s.get_secret_value() for s in cfg.stripe_webhook_secrets]
    try:
        verify(
            body, request.headers.get("Stripe-Signature"), secrets, cfg.stripe_webhook_tolerance_s
        )
    except stripe.SignatureVerificationError as exc:
        log.warning("webhook rejected: %s", exc.user_message or exc)
        metrics.WEBHOOKS.labels("bad_signature").inc()
        return _problem(400, "signature verification failed")
    try:
        event: Any = json.loads(body)
    except ValueError:
        metrics.WEBHOOKS.labels("malformed").inc()
        return _problem(400, "body is not JSON")
    publisher = request.app[PUBLISHER]
    try:
        topic = await publisher.publish(event)
    except BadEvent as exc:
        publisher.counts["rejected"] += 1
        metrics.WEBHOOKS.labels("malformed").inc()
        return _problem(400, str(exc))
    except PublishError as exc:
        log.error("event %s not acknowledged by the broker: %s", event.get("id"), exc)
        metrics.WEBHOOKS.labels("unavailable").inc()
        return _problem(503, "event could not be stored; retry later")
    if topic is None:
        log.info("event %s of unhandled type %s acknowledged", event["id"], event["type"])
        metrics.WEBHOOKS.labels("ignored").inc()
        return web.json_response({"received": True, "ignored": True})
    metrics.WEBHOOKS.labels("accepted").inc()
    metrics.RECORDS_OUT.labels("webhook", topic).inc()
    return web.json_response({"received": True, "topic": topic})


async def metrics_page(request: web.Request) -> web.Response:
    body, content_type = metrics.exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "counts": request.app[PUBLISHER].counts})


async def readyz(request: web.Request) -> web.Response:
    # the probe waits for the broker (up to 2 s): in a thread, so that webhooks arriving
    # meanwhile are not held behind it (on the event loop a probe during a broker kill held
    # every request for 2 s)
    ready = await asyncio.to_thread(request.app[PUBLISHER].ready)
    return web.json_response({"ready": ready}, status=200 if ready else 503)


def make_app(boot: Bootstrap | None = None) -> web.Application:
    boot = boot or Bootstrap()
    app = web.Application(client_max_size=MAX_BODY)
    app[STRIPE] = boot.stripe  # the endpoint secrets and the tolerance
    app[PUBLISHER] = boot.publisher()
    app.router.add_post("/webhooks/stripe", handle_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)

    async def close(app: web.Application) -> None:
        app[PUBLISHER].close()

    app.on_cleanup.append(close)
    return app


def serve(host: str, port: int, boot: Bootstrap | None = None) -> None:
    boot = boot or Bootstrap()
    if not boot.stripe.stripe_webhook_secrets:
        raise SystemExit("LEDGER_STRIPE_WEBHOOK_SECRETS is not set: webhooks cannot be verified")
    app = make_app(boot)
    logs.COMPONENT["name"] = "webhook"
    # aiohttp finishes in-flight requests on SIGTERM/SIGINT within shutdown_timeout
    web.run_app(app, host=host, port=port, shutdown_timeout=30, print=None, access_log=None)
