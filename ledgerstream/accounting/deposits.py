"""A payout and its balance transactions → one NetSuite deposit that equals the payout exactly.

Lines (all amounts in the payout currency, integer minor units until the very end):

- ``payment``: every charge, refund and dispute withdrawal that NetSuite holds a record for
  (customerPayment ``ch_…``, customerRefund ``re_…``/``dp_…``), at the amount NetSuite books
  for it. Without currency conversion that is the settlement amount. With conversion NetSuite
  books presentment × Stripe's rate; the rounding difference to what Stripe actually settled
  goes to a currency-conversion line per presentment currency, so nothing is lost either way.
- ``cashback`` (reduces the deposit): fees, summed per fee type (``stripe_fee``,
  ``application_fee``, ``payment_method_passthrough_fee``, ``tax``, ``dispute_fee`` …), each
  to its expense account; and any other negative amount (Stripe fee transactions, negative
  adjustments).
- ``other`` (increases the deposit): dispute reversals, fee refunds, positive adjustments and
  any category we do not know, labelled with Stripe's category — never dropped.
- suspense: a transaction whose source NetSuite will never hold (blocked, not synced) goes to
  the suspense account, labelled with its id.

The lines then add up to Σ net of the transactions. If that is not the payout amount (a
transaction is missing) or fewer transactions arrived than the payout lists, the deposit is
incomplete: policy ``wait`` holds it back; policy ``post`` adds a clearly labelled variance line
to the suspense account. A deposit is never silently unbalanced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ledgerstream.accounting import ids
from ledgerstream.accounting.mapping import UnmappedError, currency_ref, tran_date
from ledgerstream.accounting.model import BalanceTransaction, Payout
from ledgerstream.commands import Command, canonical_json, find_refs, ref
from ledgerstream.money import convert, to_minor, to_netsuite
from ledgerstream.settings import AccountingSettings

PAYMENT_CATEGORIES = {"charge", "payment"}
REFUND_CATEGORIES = {"refund", "dispute"}
DISPUTE_CATEGORIES = {"dispute", "dispute_reversal"}


@dataclass(frozen=True)
class Settled:
    """The NetSuite record that stands for a balance transaction's source."""

    record_type: str  # customerPayment | customerRefund
    external_id: str


Resolver = Callable[[BalanceTransaction], Settled | None]


def default_resolver(txn: BalanceTransaction) -> Settled | None:
    """Sources named by their id prefix: ch_/py_ → payment; re_/pyr_/dp_ → refund; a
    refund's ``refund_failure`` → the payment that took its money back."""
    source = txn.source or ""
    if txn.reporting_category in PAYMENT_CATEGORIES and source.startswith(("ch_", "py_")):
        return Settled("customerPayment", source)
    if txn.reporting_category in REFUND_CATEGORIES and source.startswith(("re_", "pyr_", "dp_")):
        return Settled("customerRefund", source)
    if txn.reporting_category == "refund_failure" and source.startswith(("re_", "pyr_")):
        # the money of a failed refund, back: the payment that takes it in (mapping)
        return Settled("customerPayment", ids.refund_failure(source))
    return None


@dataclass(frozen=True)
class Line:
    sublist: str  # payment | cashback | other
    amount: int  # minor units; signed for payment lines, positive for cashback/other
    memo: str
    settled: Settled | None = None
    account: str | None = None

    @property
    def signed(self) -> int:
        """Effect on the deposit total."""
        return -self.amount if self.sublist == "cashback" else self.amount


@dataclass(frozen=True)
class DepositPlan:
    payout: Payout
    lines: tuple[Line, ...]
    transactions: int
    expected: int | None
    variance: int  # payout amount − Σ lines before any variance line
    problems: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def total(self) -> int:
        return sum(line.signed for line in self.lines)


def _signed_line(sublist_if_positive: str, amount: int, memo: str, account: str) -> Line | None:
    if amount == 0:
        return None
    if amount > 0:
        return Line(sublist_if_positive, amount, memo, account=account)
    return Line(
        "cashback" if sublist_if_positive == "other" else "other", -amount, memo, account=account
    )


def plan_deposit(
    payout: Payout,
    transactions: Iterable[BalanceTransaction],
    cfg: AccountingSettings,
    resolve: Resolver = default_resolver,
    expected: int | None = None,
) -> DepositPlan:
    """The deposit lines of a payout; independent of the order of ``transactions``.

    ``expected``: how many transactions (the payout's own excluded) Stripe lists for the payout,
    when known; fewer received means the list is incomplete.
    """
    if payout.amount < 0:
        raise UnmappedError(f"payout {payout.id} is negative; a NetSuite deposit cannot be")
    cur = payout.currency.lower()
    unique = {t.id: t for t in transactions}
    txns = sorted(
        (t for t in unique.values() if not _own(t, payout)),
        key=lambda t: (t.created, t.id),
    )
    payments: list[Line] = []
    other: list[Line] = []
    fees: dict[str, int] = defaultdict(int)
    fx: dict[str, int] = defaultdict(int)
    suspense: list[Line] = []
    problems: list[str] = []

    for t in txns:
        if t.currency.lower() != cur:
            raise UnmappedError(
                f"balance transaction {t.id} is in {t.currency.upper()}, payout {payout.id} in "
                f"{cur.upper()}"
            )
        fee_type = "dispute_fee" if t.reporting_category in DISPUTE_CATEGORIES else None
        itemised = 0
        for fd in t.fee_details:
            fees[fee_type or fd.type] += fd.amount
            itemised += fd.amount
        if t.fee != itemised:
            fees["other_fee"] += t.fee - itemised

        category = t.reporting_category
        returned = category == "refund_failure" and (t.source or "").startswith(("re_", "pyr_"))
        if category in PAYMENT_CATEGORIES | REFUND_CATEGORIES or returned:
            settled = resolve(t)
            if settled is None:
                line = _signed_line(
                    "other",
                    t.amount,
                    f"Stripe unsynced {category} {t.source or t.id} ({t.id})",
                    cfg.netsuite_suspense_account_id,
                )
                if line:
                    suspense.append(line)
                continue
            booked = _booked(t)
            payments.append(Line("payment", booked, ids.memo(settled.external_id), settled))
            if booked != t.amount:
                fx[(t.source_currency or "").upper()] += t.amount - booked
        elif category in ("payout", "payout_reversal") or t.type == "payout_failure":
            # another payout's money back in the balance (it failed): out of the account its
            # own deposit put it in when it failed (deposit_commands), so it nets to zero
            line = _signed_line(
                "other",
                t.amount,
                f"Stripe payout {t.source or t.id} failed, its money back ({t.id})",
                _payout_failure_account(cfg),
            )
            if line:
                other.append(line)
        else:
            label = {"dispute_reversal": "Stripe dispute reversal", "fee": "Stripe fee"}.get(
                category, f"Stripe {category}"
            )
            account = (
                _fee_account("stripe_fee", cfg)
                if category == "fee"
                else cfg.netsuite_other_income_account_id
            )
            line = _signed_line(
                "other", t.amount, f"{label} {t.source or ''} ({t.id})".replace("  ", " "), account
            )
            if line:
                other.append(line)

    fee_lines = []
    for fee_type in sorted(fees):
        amount = fees[fee_type]
        if amount > 0:
            fee_lines.append(
                Line(
                    "cashback",
                    amount,
                    f"Stripe fees: {fee_type}",
                    account=_fee_account(fee_type, cfg),
                )
            )
        elif amount < 0:
            fee_lines.append(
                Line(
                    "other",
                    -amount,
                    f"Stripe fee refunds: {fee_type}",
                    account=_fee_account(fee_type, cfg),
                )
            )
    fx_lines = [
        line
        for code in sorted(fx)
        if (
            line := _signed_line(
                "other",
                fx[code],
                f"Currency conversion {code or '?'}→{cur.upper()}",
                cfg.netsuite_fx_account_id,
            )
        )
    ]
    payments.sort(
        key=lambda ln: (ln.settled.record_type, ln.settled.external_id) if ln.settled else ("", "")
    )
    lines = [
        *payments,
        *fee_lines,
        *sorted(other, key=lambda ln: ln.memo),
        *fx_lines,
        *sorted(suspense, key=lambda ln: ln.memo),
    ]
    total = sum(line.signed for line in lines)
    variance = payout.amount - total
    if expected is not None and len(txns) < expected:
        problems.append(f"{len(txns)} of {expected} balance transactions received")
    if variance:
        problems.append(
            f"lines add up to {total}, payout is {payout.amount} ({cur.upper()} minor units)"
        )
    return DepositPlan(payout, tuple(lines), len(txns), expected, variance, tuple(problems))


def _own(t: BalanceTransaction, payout: Payout) -> bool:
    return t.id == payout.balance_transaction or (t.type == "payout" and t.source == payout.id)


def _booked(t: BalanceTransaction) -> int:
    """What NetSuite books for a converted payment: presentment × Stripe's rate, rounded once."""
    if t.exchange_rate is None or t.source_amount is None or not t.source_currency:
        return t.amount
    magnitude = convert(abs(t.source_amount), t.exchange_rate, t.source_currency, t.currency)
    return magnitude if t.amount >= 0 else -magnitude


def _payout_failure_account(cfg: AccountingSettings) -> str:
    return cfg.netsuite_payout_failure_account_id or cfg.netsuite_suspense_account_id


def _fee_account(fee_type: str, cfg: AccountingSettings) -> str:
    accounts = cfg.netsuite_fee_account_ids
    return accounts.get(fee_type) or accounts.get("default") or cfg.netsuite_suspense_account_id


def deposit_commands(plan: DepositPlan, cfg: AccountingSettings) -> list[Command]:
    """The deposit command of a plan; empty while an incomplete plan must wait.

    With policy ``post`` an incomplete plan is posted with a labelled variance line.
    """
    payout = plan.payout
    lines = list(plan.lines)
    notes: list[str] = []
    if not plan.complete:
        if cfg.deposit_variance_policy == "wait":
            return []
        variance = _signed_line(
            "other",
            plan.variance,
            f"Stripe variance: {'; '.join(plan.problems)}",
            cfg.netsuite_suspense_account_id,
        )
        if variance:
            lines.append(variance)
        notes.append("POSTED WITH VARIANCE: " + "; ".join(plan.problems))
    deposited = payout.amount
    if payout.status == "failed":
        # the money never reached the bank and is back in the Stripe balance: the deposit
        # keeps its lines (its payments leave Undeposited Funds) and one line moves the whole
        # amount to the payout-failure account, which the later payout that carries the
        # payout_failure transaction takes it back from; the bank gets nothing
        failed = _signed_line(
            "cashback",
            payout.amount,
            f"Stripe payout {payout.id} failed ({payout.failure_code or 'no reason given'}): "
            "its money went back to the Stripe balance",
            _payout_failure_account(cfg),
        )
        if failed:
            lines.append(failed)
        notes.append("FAILED: deposited again by a later payout")
        deposited = 0
    if sum(line.signed for line in lines) != deposited:  # pragma: no cover - invariant
        raise AssertionError(f"deposit {payout.id} does not balance")
    parts = _split(lines, payout, cfg)
    if len(parts) > 1:
        notes.append(f"part 1 of {len(parts)}")
    cur = payout.currency
    try:
        bank = cfg.netsuite_bank_account_ids[cur.upper()]
    except KeyError:
        raise UnmappedError(f"no NetSuite bank account for payout currency {cur.upper()}") from None
    day, note = tran_date(payout.arrival_date, cfg)
    commands = []
    for number, part in enumerate(parts, start=1):
        part_notes = notes if number == 1 else [f"part {number} of {len(parts)}"]
        body = {
            "account": {"id": bank},
            "subsidiary": {"id": cfg.netsuite_subsidiary_id},
            "currency": currency_ref(cur, cfg),
            "tranDate": day,
            "memo": ids.memo(payout.id, note, *part_notes),
            **_sublists(part, cur),
        }
        first = number == 1
        commands.append(
            Command(
                "deposit",
                payout.id if first else f"{payout.id}-{number}",
                body,
                "payout",
                payout.id,
                "netsuite_deposit_id" if first else None,
                (payout.event_id,) if payout.event_id else (),
                suspense_account=cfg.netsuite_suspense_account_id,
                payout_currency=cur.lower(),
                payout_amount=deposited if first else None,
            )
        )
    return commands


def on_suspense(
    body: dict[str, Any], missing: Iterable[tuple[str, str]], account: str
) -> dict[str, Any] | None:
    """A deposit body with the payment lines of the ``missing`` records moved to ``account``.

    For a deposit whose records NetSuite still does not hold when the sink's wait ends (a
    source blocked through its customer or invoice, a second payment skipped on a paid
    invoice, a record dead-lettered or never sent): each such payment line becomes an
    ``other`` line (a payment) or a ``cashback`` line (a refund) of the same amount on the
    suspense account, labelled with the Stripe id, so the deposit still equals the payout and
    posts. None when a missing record is not one of its payment lines (nothing to move it to).
    """
    gone = set(missing)
    payment = body.get("payment", {}).get("items", [])
    kept: list[dict[str, Any]] = []
    moved: dict[str, list[dict[str, Any]]] = {"other": [], "cashback": []}
    found: set[tuple[str, str]] = set()
    for item in payment:
        target = find_refs({"$ref": item["$ref"]})[0] if "$ref" in item else None
        if target not in gone:
            kept.append(item)
            continue
        assert target is not None
        found.add(target)
        amount = Decimal(item["paymentAmount"])
        moved["other" if amount >= 0 else "cashback"].append(
            {
                "account": {"id": account},
                "amount": abs(amount),
                "memo": f"Stripe {target[1]}: no NetSuite {target[0]}, on suspense until written",
            }
        )
    if found != gone:
        return None
    out = {k: v for k, v in body.items() if k != "payment"}
    if kept:
        out["payment"] = {"items": kept}
    for sublist, lines in moved.items():
        if lines:
            out[sublist] = {"items": [*(body.get(sublist) or {}).get("items", []), *lines]}
    named = sorted(e for _, e in gone)
    more = f" and {len(named) - 10} more" if len(named) > 10 else ""
    note = f"ON SUSPENSE until written: {', '.join(named[:10])}{more}"
    out["memo"] = f"{body.get('memo') or ''} {note}".strip()[:999]
    return out


# A command is one Kafka message, and Kafka refuses messages over 1 MiB unless its broker and
# topics are configured otherwise (message.max.bytes, max.message.bytes): a deposit command
# stays below this many bytes of body and references, leaving room for the rest.
MAX_COMMAND_BYTES = 900_000


def _split(lines: list[Line], payout: Payout, cfg: AccountingSettings) -> list[list[Line]]:
    """The lines as deposits of at most ``deposit_max_lines`` lines each (NetSuite's cap),
    each small enough for one Kafka message (``MAX_COMMAND_BYTES``).

    One deposit when they fit. Otherwise the first, ``po_…``, takes the payout's amount, so
    the bank statement's one payout line still matches one deposit, and each further part
    ``po_…-2``, ``po_…-3`` … sums to zero: it carries its own lines' sum to the first through
    a line on the suspense account, which the first part's counter-line cancels (the suspense
    account nets to zero over the payout)."""
    cap = cfg.deposit_max_lines
    while True:
        parts = _parts(lines, payout, cfg, cap)
        largest = max(_encoded_size(part, payout.currency) for part in parts)
        if largest <= MAX_COMMAND_BYTES or cap <= 2:
            return parts
        cap = max(2, min(cap - 1, cap * MAX_COMMAND_BYTES // largest * 9 // 10))


def _encoded_size(lines: list[Line], cur: str) -> int:
    """About what a deposit of these lines weighs as a command: its body and, once more, the
    records it refers to (the command lists them)."""
    body = _sublists(lines, cur)
    refs = sum(len(t) + len(e) + 4 for t, e in find_refs(body))
    return len(canonical_json(body)) + refs


def _parts(
    lines: list[Line], payout: Payout, cfg: AccountingSettings, cap: int
) -> list[list[Line]]:
    if len(lines) <= cap:
        return [lines]
    size = cap - 1  # room for the carry line
    parts = [lines[i : i + size] for i in range(0, len(lines), size)]
    carried = 0
    for number, part in enumerate(parts[1:], start=2):
        moved = sum(line.signed for line in part)
        carried += moved
        carry = _signed_line(
            "cashback",
            moved,
            f"Stripe payout {payout.id}: part {number}'s lines, carried to {payout.id}",
            cfg.netsuite_suspense_account_id,
        )
        if carry:
            part.append(carry)
    back = _signed_line(
        "other",
        carried,
        f"Stripe payout {payout.id}: lines of parts 2-{len(parts)}, carried here",
        cfg.netsuite_suspense_account_id,
    )
    if back:
        parts[0].append(back)
    return parts


def _sublists(lines: list[Line], cur: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    payment_items = [
        {
            **ref(ln.settled.record_type, ln.settled.external_id),
            "deposit": True,
            "paymentAmount": _amount(ln.amount, cur),
        }
        for ln in lines
        if ln.sublist == "payment" and ln.settled
    ]
    for sublist in ("other", "cashback"):
        items = [
            {
                "account": {"id": ln.account},
                "amount": _amount(ln.amount, cur),
                "memo": ln.memo[:999],
            }
            for ln in lines
            if ln.sublist == sublist
        ]
        if items:
            body[sublist] = {"items": items}
    if payment_items:
        body["payment"] = {"items": payment_items}
    return body


def _amount(minor: int, currency: str) -> Decimal:
    return to_netsuite(minor, currency)


# what a deposit line is, from how deposit_commands writes it (memo prefixes; payment lines by
# sign): the kinds of composition()
_MEMO_KINDS = (
    ("Stripe fees: ", "fee"),
    ("Stripe fee refunds: ", "fee refund"),
    ("Currency conversion", "currency conversion"),
    ("Stripe unsynced", "suspense"),
    ("Stripe variance", "variance"),
    ("Stripe payout ", "payout failure"),
)


def composition(body: dict[str, Any], currency: str) -> dict[str, int]:
    """What a deposit (a NetSuite deposit body, as deposit_commands makes it or as NetSuite
    returns it) is made of: signed minor units by kind (``payments``, ``refunds``,
    ``fee: <type>``, ``currency conversion``, ``suspense``, …) whose sum is the deposit total.
    For a person reading a payout (the status page, the demo's report), not for booking."""
    kinds: dict[str, int] = defaultdict(int)
    for item in (body.get("payment") or {}).get("items", []):
        minor = to_minor(Decimal(str(item["paymentAmount"])), currency)
        kinds["payments" if minor >= 0 else "refunds"] += minor
    for sublist, sign in (("other", 1), ("cashback", -1)):
        for item in (body.get(sublist) or {}).get("items", []):
            memo = str(item.get("memo", ""))
            kind = next((k for prefix, k in _MEMO_KINDS if memo.startswith(prefix)), None)
            if kind in ("fee", "fee refund"):
                kind = f"fee: {memo.split(': ', 1)[1]}"
            elif kind is None:  # "Stripe dispute reversal …", "Stripe <category> …"
                words = memo.split(" ")
                kind = " ".join(words[1:3] if words[1:2] == ["dispute"] else words[1:2])
            kinds[kind] += sign * to_minor(Decimal(str(item["amount"])), currency)
    return dict(kinds)
