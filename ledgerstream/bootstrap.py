"""One bootstrap: the clients of the outside systems, wired from settings in one place.

Every component (router, payout contents, metadata writer, NetSuite sink, poller, backfill,
webhook) takes a ``Bootstrap`` and asks it for the clients it needs: the Stripe API, the Kafka
publisher, the NetSuite client. ``Bootstrap()`` builds them from the settings (environment,
``.env``, ``*_FILE`` secrets) the first time each is asked for, so a component that does not
call Stripe never needs a Stripe key. Tests and tools hand the doubles in here, e.g.
``Bootstrap(stripe=StripeSettings(stripe_api_base=double_url, ...))`` or
``Bootstrap(stripe_api=recording_api)``, instead of patching settings.

Kafka and the schema registry are configured, not doubled (the tests run a real broker and a
real registry): their clients read ``settings.kafka()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe as stripe_sdk

from ledgerstream import settings

if TYPE_CHECKING:  # the stages import this module: their clients only when asked for
    from ledgerstream.producers.publisher import EventPublisher
    from ledgerstream.producers.stripe_api import StripeAPI
    from ledgerstream.sinks.netsuite_client import NetSuiteClient


class Bootstrap:
    def __init__(
        self,
        *,
        stripe: settings.StripeSettings | None = None,
        netsuite: settings.NetSuiteSettings | None = None,
        stripe_api: StripeAPI | None = None,
        netsuite_client: NetSuiteClient | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self._stripe = stripe
        self._netsuite = netsuite
        self._stripe_api = stripe_api
        self._netsuite_client = netsuite_client
        self._publisher = publisher

    # read on first use: a component that never calls NetSuite (the webhook, the router) must
    # not refuse to start over a NetSuite setting, nor the sink over a Stripe one
    @property
    def stripe(self) -> settings.StripeSettings:
        if self._stripe is None:
            self._stripe = settings.stripe()
        return self._stripe

    @property
    def netsuite(self) -> settings.NetSuiteSettings:
        if self._netsuite is None:
            self._netsuite = settings.netsuite()
        return self._netsuite

    def stripe_api(self) -> StripeAPI:
        """The Stripe API client (rate-limited); ``MissingSettings`` without a Stripe key."""
        if self._stripe_api is None:
            from ledgerstream.producers.stripe_api import StripeAPI

            self._stripe_api = StripeAPI(self.stripe)
        return self._stripe_api

    def stripe_client(self, max_network_retries: int = 2) -> stripe_sdk.StripeClient:
        """A plain ``stripe.StripeClient`` for writes (the metadata writer's own retries)."""
        return stripe_sdk.StripeClient(
            self.stripe.api_key(),
            base_addresses={"api": self.stripe.stripe_api_base},
            stripe_version=self.stripe.stripe_api_version,
            max_network_retries=max_network_retries,
        )

    def netsuite_client(self) -> NetSuiteClient:
        """The SuiteTalk REST client (TBA or OAuth 2.0, as ``LEDGER_NETSUITE_AUTH`` says)."""
        if self._netsuite_client is None:
            from ledgerstream.sinks.netsuite_client import NetSuiteClient

            self._netsuite_client = NetSuiteClient(self.netsuite)
        return self._netsuite_client

    def publisher(self, delivery_timeout_ms: int | None = None) -> EventPublisher:
        """The publisher handed in (shared: the component that stops first closes it), else a
        new one per call, which the component that asked closes."""
        if self._publisher is not None:
            return self._publisher
        from ledgerstream.producers.publisher import EventPublisher

        return EventPublisher(delivery_timeout_ms=delivery_timeout_ms)
