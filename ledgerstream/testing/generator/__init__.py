"""A seeded generator of one merchant's Stripe history, in the API's own JSON shapes.

Objects look exactly like Stripe API version ``2024-06-20`` returns them (the last version where
``charge.invoice``, ``invoice.charge``, ``invoice.tax`` and line ``price``/``plan`` exist), and each
state change comes as the Event Stripe would deliver for it. The history is internally
consistent, so the pipeline can be tested on realistic data flows that stripe-mock (stateless)
cannot give:

- invoice arithmetic: ``subtotal`` = Σ line ``amount``; ``total`` = subtotal − discounts + tax +
  shipping; ``amount_due`` = total − pre-payment credit notes;
- an invoice with more lines than it embeds (``EMBEDDED_LINES``, ten, the list endpoints'
  default page; with ``Scenario.long_invoice_rate``) embeds the first ones with
  ``lines.has_more`` and the full ``total_count``, as Stripe does; :attr:`History.invoice_lines`
  has every line, as ``GET /v1/invoices/{id}/lines`` gives them, and the sums above are over
  them all;
- every amount is an integer in minor units that :func:`ledgerstream.money.check_amount` accepts,
  in the presentment currency and (with the payout step) in the settlement currency;
- every balance transaction has ``net == amount - fee`` and ``fee == Σ fee_details.amount``;
- every payout's ``amount`` equals the sum of ``net`` of the transactions it pays out, which are
  listed in :attr:`History.payout_transactions` as ``GET /v1/balance_transactions?payout=`` would;
- the events of one object come in causal order, each carrying a copy of the object's state at
  that moment.

Guarantee: pure and deterministic. No I/O, no clock, no global random state: the same
:class:`Scenario` gives byte-identical events. :func:`iter_events` streams a history of any length
in ``(created, id)`` order while holding only what is still open (open invoices, charges that will
still be refunded or disputed, balance transactions not yet paid out): its memory grows with the
number of customers, not with the number of months or events.

The story: customers sign up during the first 20 days and subscribe minutes later; each then gets
one subscription invoice per month, and customers also get one-off invoices and bare charges
(plus charges from guests). A long invoice (any kind) also collects tens or hundreds of the
customer's pending invoice items. The simulation then runs until everything has settled: retries,
refunds, disputes and credit notes run their course, and daily payouts continue until no
balance transaction that could still be paid out is left.

Deliberate simplifications (each one keeps the data valid for the API version):

- only the objects the pipeline reads are generated; subscriptions, payment intents, payment
  methods, invoice items, shipping rates and application fees are referenced by id only;
- ``charge.refunds`` is absent, as it is since API version 2022-11-15 unless expanded; refunds
  come as ``refund.created`` events and in :attr:`History.objects`;
- proration lines (upgrades only, so no invoice is negative) are not discounted;
- each customer's currency is fixed by its first invoice, announced by a ``customer.updated``
  whose ``previous_attributes`` is ``{"currency": null}`` as Stripe does; other edits are rare;
- fixed fees and the dispute fee are US amounts converted by a reference rate (30 US cents;
  USD 15 rounded to whole units), so they have a sensible size in JPY or KWD;
- a dispute's withdrawal and reinstatement are converted at the rate of their own day, not the
  charge's, so converted disputes carry a currency difference, as they do at Stripe.

The package, one module per concern (each holds that concern's code and reference data):

- ``scenario``: :class:`Scenario`, :class:`History`, :func:`generate` and :func:`iter_events`;
- ``common``: the reference data and pure helpers every concern uses (ids, rounding, dates,
  regions and their tax rates);
- ``engine``: the discrete-event loop (scheduling, emitting events, keeping objects) and the
  records the simulation keeps between actions;
- ``catalogue``: products, prices, plans, tax rates and coupons;
- ``payouts``: balance transactions, their fees, exchange rates and the daily payouts;
- ``disputes``: disputes, their evidence and their funds;
- ``payments``: cards, charges, refunds and one-off charges;
- ``credit_notes``: pre- and post-payment credit notes, and voiding them;
- ``invoices``: drafting (lines, discounts, tax), one-off invoices and the invoice life cycle;
- ``subscriptions``: subscriptions and their monthly invoices;
- ``customers``: sign-ups and later edits;
- ``simulation``: ``_Simulation``, which composes the concerns and schedules the story.

Each concern is a mixin class over the engine, which holds the state they share, and inherits
the concerns it calls, so calls only go down: the catalogue and the payouts stand on the engine;
disputes inherit payouts, payments disputes, credit notes payments, invoices credit notes and the
catalogue, subscriptions invoices, and customers subscriptions; ``_Simulation`` lists them all.
Mixins rather than collaborator objects because the concerns call each other all the time (an
invoice is paid by a charge, which books a balance transaction, which a payout pays out): as
methods of one object, the code moved unchanged, line for line, so the order of random draws
(which *is* the output) is untouched, and mypy checks every call across concerns through plain
inheritance, with no protocol restating their signatures.
"""

from ledgerstream.testing.generator.common import API_VERSION, DAY, EMBEDDED_LINES, HOUR, Obj
from ledgerstream.testing.generator.scenario import History, Scenario, generate, iter_events

__all__ = [
    "API_VERSION",
    "DAY",
    "EMBEDDED_LINES",
    "HOUR",
    "History",
    "Obj",
    "Scenario",
    "generate",
    "iter_events",
]
