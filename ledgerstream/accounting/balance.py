"""A customer's Stripe credit balance in NetSuite: which credit memo pays which invoice.

Stripe keeps one balance per customer: a negative invoice or a post-payment credit note that
was not refunded adds a credit to it, and each invoice finalized next takes what it can off its
amount due (``starting_balance`` → ``ending_balance``). In NetSuite the credit is the credit
memo of its source (``cm_bal_in_…``, ``cm_cn_…``), open until applied; so an invoice the
balance paid is paid by applying those memos to it, oldest credit first to the oldest invoice,
as Stripe consumes the balance. Then the customer's open credit in NetSuite is Stripe's
balance, at every point where both have seen the same objects.

Pure functions of the sets of credits and uses: the result does not depend on the order in
which they became known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# when (epoch ms) and how much (minor units), by memo external id
Credits = Mapping[str, tuple[int, int]]
# when (epoch ms), how much the balance paid of it, and the balance it started from (Stripe's
# starting_balance: negative, a credit), by invoice id
Uses = Mapping[str, tuple[int, int, int]]


@dataclass(frozen=True)
class Allocation:
    applied: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # memo -> invoices
    uncovered: dict[str, int] = field(default_factory=dict)  # invoice -> not applied yet
    # invoice -> the credit missing before it: what the credits and uses known before it lack
    # to make the balance Stripe says it started from (an adjustment made by hand in Stripe)
    missing: dict[str, int] = field(default_factory=dict)

    def of(self, memo: str) -> list[tuple[str, int]]:
        return self.applied.get(memo, [])


def allocate(credits: Credits, uses: Uses) -> Allocation:
    """Apply the ``credits`` (credit memos) to the ``uses`` (invoices the balance paid), the
    oldest credit first, to each invoice in the order they were finalized, from the credits
    dated at or before it.

    An invoice is paid only once everything before it is known: the credits and uses known
    before it must leave exactly the balance it started from, else it stays ``uncovered``
    (with what is ``missing``). So an application, once made, is never moved to another
    invoice by a credit or use that becomes known later (NetSuite would see the same credit
    applied twice on the way), whatever the order in which they arrive.
    """
    ordered = sorted(credits.items(), key=lambda item: (item[1][0], item[0]))
    memos = [memo for memo, _ in ordered]
    whens = [when for _, (when, _) in ordered]
    left = [amount for _, (_, amount) in ordered]
    applied: dict[str, list[tuple[str, int]]] = {}
    uncovered: dict[str, int] = {}
    missing: dict[str, int] = {}
    used_before = 0
    for invoice, (when, need, start) in sorted(uses.items(), key=lambda i: (i[1][0], i[0])):
        credited = sum(amount for (w, amount) in credits.values() if w <= when)
        available = credited - used_before
        used_before += need
        if available != -start:
            uncovered[invoice] = need
            missing[invoice] = -start - available
            continue
        for at in range(len(left)):
            if not need or whens[at] > when:
                break
            take = min(need, left[at])
            if take > 0:
                applied.setdefault(memos[at], []).append((invoice, take))
                left[at] -= take
                need -= take
        if need:  # pragma: no cover - the balance it started from covers it
            uncovered[invoice] = need
    return Allocation(applied, uncovered, missing)
