"""``ledgerstream check``: a preflight against the configured systems.

Each check is a ``Row``: a name, ✔ or ✖, what was found, and for ✖ the fix (what to set or
do, naming the ``LEDGER_`` variable). A check that cannot run because an earlier one failed
(the NetSuite records when authentication fails) is ✖ ``skipped: <reason>``, never ✔. Missing
settings are rows too, not a crash. Every network request has a short timeout, so that an
unreachable system is a ✖ naming its URL rather than a hang; secrets never reach the output.

What is checked:

- NetSuite: the credentials (an authenticated ``GET`` of one customer id, the record type the
  sink writes first), the integration's concurrency limit (``GET …/system/v1/governanceLimits``)
  against ``LEDGER_NETSUITE_CONCURRENCY``, and every set-up internal id the mapping refers to:
  it exists under the REST record type the mapping uses it as (``GET …/record/v1/<type>/<id>``;
  404 = absent or another type), accounts are of a type that fits their use (``acctType``), a
  currency's ISO code is the one it is configured for, and nothing referenced is inactive;
- Stripe: the key (``GET /v1/events``, what the poller reads), the pinned ``Stripe-Version``
  (Stripe answers 400 "Invalid Stripe API version" otherwise), the webhook signing secrets;
- Kafka: every topic ``ledgerstream topics`` creates exists with ``LEDGER_TOPIC_PARTITIONS``
  partitions; each topic's value schema is registered and ``schemas/*.avsc`` is compatible
  with it (the registry's own compatibility check).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import stripe
from pydantic import ValidationError
from pydantic_settings import SettingsError

from ledgerstream import redact, settings
from ledgerstream.producers.stripe_api import StripeAPI
from ledgerstream.settings import (
    PREFIX,
    AccountingSettings,
    KafkaSettings,
    NetSuiteSettings,
    StripeSettings,
)
from ledgerstream.sinks.netsuite_client import (
    GOVERNANCE_PATH,
    RECORD_ROOT,
    NetSuiteAuthError,
    NetSuiteClient,
    NetSuiteResponseError,
)

OK, FAIL = "✔", "✖"
INTEGRATION_GOVERNANCE = "Setup > Integration > Integration Management > Integration Governance"


@dataclass(frozen=True)
class Row:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def skipped(name: str, reason: str, fix: str) -> Row:
    return Row(name, False, f"skipped: {reason}", fix)


def render(rows: list[Row]) -> str:
    """The rows as an aligned table; a ✖ row's fix on the line below its detail."""
    width = max((len(r.name) for r in rows), default=0)
    lines = []
    for row in rows:
        lines.append(f"{OK if row.ok else FAIL} {row.name:<{width}}  {row.detail}")
        if not row.ok and row.fix:
            lines.append(f"  {'':<{width}}  fix: {row.fix}")
    failed = sum(not r.ok for r in rows)
    lines += ["", f"{len(rows)} checks: {len(rows) - failed} {OK}, {failed} {FAIL}"]
    return redact.scrub("\n".join(lines))


def exit_status(rows: Iterable[Row]) -> int:
    return 0 if all(r.ok for r in rows) else 1


def run(timeout: float = 10.0) -> list[Row]:
    """Every check against the systems the settings name, in order."""
    # whatever the settings hold as secrets is masked in the output (the command line has
    # installed them already; this covers a caller that did not)
    redact.add(redact.configured_secrets())
    rows: list[Row] = []
    ns, bad = _load("NetSuite", settings.netsuite)
    accounting, missing = load_accounting()
    rows += bad + _guarded("NetSuite", lambda: netsuite_checks(ns, accounting, missing, timeout))
    stripe_cfg, bad = _load("Stripe", settings.stripe)
    rows += bad + _guarded("Stripe", lambda: stripe_checks(stripe_cfg, timeout))
    kafka_cfg, bad = _load("Kafka", settings.kafka)
    rows += bad + _guarded("Kafka", lambda: kafka_checks(kafka_cfg, timeout))
    rows += _guarded("Schema registry", lambda: registry_checks(kafka_cfg, timeout))
    return rows


def _guarded(system: str, checks: Callable[[], list[Row]]) -> list[Row]:
    """The rows of ``checks``; an answer no check expected (a token refused mid-way, a body
    of another shape) is a ✖ row of its own, never a traceback instead of the table."""
    try:
        return checks()
    except Exception as exc:  # noqa: BLE001 - reported as a row, masked
        detail = redact.scrub(f"the check stopped: {type(exc).__name__}: {exc}")
        return [Row(f"{system} checks", False, detail, "run it again with --log-level debug")]


# --------------------------------------------------------------------------- settings
def _load(system: str, load: Any) -> tuple[Any, list[Row]]:
    try:
        return load(), []
    except (ValidationError, SettingsError, SystemExit, OSError) as exc:
        return None, [Row(f"{system} settings", False, _settings_error(exc), _SETTINGS_FIX)]


_SETTINGS_FIX = "correct the variables named (see README.md, Configuration)"


def _settings_error(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):  # never the input: it may be a secret
        return "; ".join(
            f"{PREFIX}{str(e['loc'][0]).upper() if e['loc'] else '?'}: {e['msg']}"
            for e in exc.errors()
        )
    if isinstance(exc, OSError):  # a LEDGER_<NAME>_FILE that cannot be read
        return f"a LEDGER_…_FILE cannot be read: {exc}"
    return str(exc)


def load_accounting() -> tuple[AccountingSettings | None, list[Row]]:
    """The set-up ids; a ✖ row for each required one not set, and the settings with what is
    set (so that those are still checked), or None when a value is invalid."""
    try:
        return AccountingSettings(), []
    except (ValidationError, SettingsError, SystemExit, OSError) as exc:
        error: BaseException = exc
    errors = error.errors() if isinstance(error, ValidationError) else []
    missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and e["loc"]]
    rows = [_missing(name) for name in missing]
    if not missing or len(missing) != len(errors):
        return None, [Row("NetSuite set-up ids", False, _settings_error(error), _SETTINGS_FIX)]
    fields = AccountingSettings.model_fields
    # values given here win over the environment: only the missing fields get these blanks
    blanks: dict[str, Any] = {
        n: {} if getattr(fields[n].annotation, "__origin__", None) is dict else "" for n in missing
    }
    try:
        return AccountingSettings(**blanks), rows
    except (ValidationError, SettingsError, SystemExit, OSError):
        return None, rows


def _missing(field: str) -> Row:
    ref = next((r for r in REFS if r.field == field), None)
    what = ref.what if ref else AccountingSettings.model_fields[field].description or "a value"
    name = PREFIX + field.upper()
    return Row(name, False, "not set", f"set {name}: {what}")


# --------------------------------------------------------------------------- NetSuite
# account types (``acctType``, NetSuite's AccountType values: Bank, AcctRec, OthCurrAsset,
# FixedAsset, OthAsset, AcctPay, CredCard, OthCurrLiab, LongTermLiab, Equity, Income, COGS,
# Expense, OthIncome, OthExpense, DeferRevenue, DeferExpense, UnbilledRec, NonPosting, Stat)
INCOME = ("Income", "OthIncome")
EXPENSE = ("Expense", "OthExpense", "COGS")
NOT_POSTING = ("NonPosting", "Stat")  # cannot take a deposit or journal line
# item record types an invoice or credit memo line may name (the emulator's ITEM_TYPES less
# discountItem); the global item is a serviceSaleItem as the mapping creates them
SALE_ITEMS = ("serviceSaleItem", "nonInventorySaleItem", "otherChargeSaleItem")
_SALE_ITEM = "a sale item (service, non-inventory or other charge item)"


@dataclass(frozen=True)
class Ref:
    """A set-up id of ``AccountingSettings``: the record types it may name, tried in order."""

    field: str
    label: str
    types: tuple[str, ...]
    what: str  # what the id must name, for the fix
    acct_types: tuple[str, ...] = ()  # accounts: accepted acctType values (empty: any posting)


REFS = (
    Ref(
        "netsuite_subsidiary_id", "subsidiary", ("subsidiary",), "the internal id of the subsidiary"
    ),
    Ref(
        "netsuite_currency_ids",
        "currencies",
        ("currency",),
        "a JSON object of ISO code -> internal id of that currency record",
    ),
    Ref(
        "netsuite_undeposited_funds_account_id",
        "undeposited funds",
        ("account",),
        "the internal id of the Undeposited Funds account",
        # the account the Accounting feature generates (Oracle's NetSuite help, "Feature-
        # Specific, System-Generated Accounts"), an Other Current Asset; the emulator seeds it
        # with its special-account type, UnDepFunds
        ("UnDepFunds", "OthCurrAsset"),
    ),
    Ref(
        "netsuite_bank_account_ids",
        "bank accounts",
        ("account",),
        "a JSON object of payout currency -> internal id of a Bank account",
        ("Bank",),
    ),
    Ref(
        "netsuite_fee_account_ids",
        "fee accounts",
        ("account",),
        "a JSON object of Stripe fee type (or default) -> internal id of an expense account",
        EXPENSE,
    ),
    Ref(
        "netsuite_other_income_account_id",
        "other income account",
        ("account",),
        "the internal id of an income account",
        INCOME,
    ),
    Ref(
        "netsuite_fx_account_id",
        "fx account",
        ("account",),
        "the internal id of an income or expense account (currency differences)",
        INCOME + EXPENSE,
    ),
    Ref(
        "netsuite_suspense_account_id",
        "suspense account",
        ("account",),
        "the internal id of a posting account (what a deposit could not match)",
    ),
    Ref(
        "netsuite_payment_method_id",
        "payment method",
        ("paymentMethod",),
        "the internal id of a payment method",
    ),
    Ref("netsuite_global_item_id", "global item", SALE_ITEMS, f"the internal id of {_SALE_ITEM}"),
    Ref(
        "netsuite_discount_item_id",
        "discount item",
        ("discountItem",),
        "the internal id of a discount item",
    ),
    Ref("netsuite_tax_item_id", "tax item", SALE_ITEMS, f"the internal id of {_SALE_ITEM}"),
    Ref(
        "netsuite_shipping_item_id", "shipping item", SALE_ITEMS, f"the internal id of {_SALE_ITEM}"
    ),
    Ref(
        "netsuite_partial_refund_item_id",
        "partial refund item",
        SALE_ITEMS,
        f"the internal id of {_SALE_ITEM}",
    ),
    Ref(
        "netsuite_income_account_id",
        "income account",
        ("account",),
        "the internal id of an income account (of the items the pipeline creates)",
        INCOME,
    ),
    Ref(
        "netsuite_global_customer_id",
        "global customer",
        ("customer",),
        "the internal id of an existing customer, or unset it (global mode then creates one)",
    ),
)

_AUTH_FIX = {
    "tba": "check LEDGER_NETSUITE_CONSUMER_KEY, LEDGER_NETSUITE_CONSUMER_SECRET, "
    "LEDGER_NETSUITE_TOKEN_ID, LEDGER_NETSUITE_TOKEN_SECRET and LEDGER_NETSUITE_ACCOUNT_ID "
    "(the realm); NetSuite's Login Audit Trail names the cause",
    "m2m": "check LEDGER_NETSUITE_CLIENT_ID, LEDGER_NETSUITE_CERTIFICATE_ID and "
    "LEDGER_NETSUITE_PRIVATE_KEY (the key of the certificate uploaded for that id), and "
    "LEDGER_NETSUITE_ACCOUNT_ID",
}
_UNREACHABLE_FIX = (
    "check LEDGER_NETSUITE_BASE_URL (unset: https://<LEDGER_NETSUITE_ACCOUNT_ID>"
    ".suitetalk.api.netsuite.com) and the network"
)


def _ns_error(exc: NetSuiteResponseError) -> str:
    first = exc.details[0] if exc.details else {}
    code = first.get("o:errorCode", "") or exc.title
    detail = str(first.get("detail", ""))
    if code == "INVALID_LOGIN" or not detail:
        return f"HTTP {exc.status} {code}".strip()
    return f"HTTP {exc.status} {code}: {detail[:160]}"


class _Unreachable(Exception):
    pass


class _Records:
    """Set-up records read once each; after the first network failure, no further request
    (each would wait for its own timeout)."""

    def __init__(self, client: NetSuiteClient):
        self.client = client
        self.cache: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.broken: str | None = None

    def get(self, rtype: str, ident: str) -> dict[str, Any] | None:
        if (rtype, ident) not in self.cache:
            if self.broken:
                raise _Unreachable(self.broken)
            try:
                self.cache[rtype, ident] = self.client.get(rtype, ident)
            except NetSuiteResponseError as exc:
                if exc.status != 404:
                    raise
                self.cache[rtype, ident] = None
            except requests.RequestException as exc:
                self.broken = f"unreachable: {self.client.root} ({type(exc).__name__})"
                raise _Unreachable(self.broken) from exc
        return self.cache[rtype, ident]

    def find(self, types: tuple[str, ...], ident: str) -> tuple[str, dict[str, Any]] | None:
        for rtype in types:
            record = self.get(rtype, ident)
            if record is not None:
                return rtype, record
        return None


def netsuite_checks(
    ns: NetSuiteSettings | None,
    accounting: AccountingSettings | None,
    missing: list[Row],
    timeout: float,
) -> list[Row]:
    refs = [r for r in REFS if accounting is not None and getattr(accounting, r.field)]
    if ns is None:
        reason = "the NetSuite settings are invalid"
        return [
            skipped("NetSuite auth", reason, "resolve “NetSuite settings” first"),
            skipped("NetSuite concurrency", reason, "resolve “NetSuite settings” first"),
            *missing,
            *[
                skipped(f"NetSuite {r.label}", reason, "resolve “NetSuite settings” first")
                for r in refs
            ],
        ]
    auth, client = _auth(ns, timeout)
    rows = [auth]
    if client is None:
        reason, fix = "NetSuite authentication failed", "resolve “NetSuite auth” first"
        rows.append(skipped("NetSuite concurrency", reason, fix))
        return rows + missing + [skipped(f"NetSuite {r.label}", reason, fix) for r in refs]
    rows.append(_governance(client, ns))
    rows += missing
    records = _Records(client)
    assert accounting is not None or not refs
    for ref in refs:
        rows.append(_ref_row(records, ref, getattr(accounting, ref.field)))
    return rows


def _auth(ns: NetSuiteSettings, timeout: float) -> tuple[Row, NetSuiteClient | None]:
    name = "NetSuite auth"
    method = {"tba": "token-based auth (TBA)", "m2m": "OAuth 2.0 M2M"}[ns.netsuite_auth]
    fix = _AUTH_FIX[ns.netsuite_auth]
    try:
        ns.require_credentials()
    except SystemExit as exc:
        return Row(
            name, False, str(exc), f"set them, or LEDGER_NETSUITE_AUTH (now {ns.netsuite_auth})"
        ), None
    quick = ns.model_copy(update={"netsuite_timeout_s": min(ns.netsuite_timeout_s, timeout)})
    try:
        client = NetSuiteClient(quick)
    except Exception as exc:  # noqa: BLE001 - e.g. a private key that is no PEM key
        return Row(name, False, f"credentials unusable: {type(exc).__name__}", fix), None
    where = f"{client.root} (account {ns.netsuite_account_id})"
    for attempt in range(2):
        try:
            # one id of the record type the sink writes first (its role must read it)
            client.read(f"{RECORD_ROOT}/customer", {"limit": 1})
            return Row(name, True, f"{method} accepted by {where}"), client
        except NetSuiteAuthError as exc:  # M2M: the token endpoint refused the assertion
            return Row(name, False, str(exc).split(". Check")[0], fix), None
        except NetSuiteResponseError as exc:
            if exc.status == 401 and attempt == 0:
                time.sleep(1.0)  # NetSuite sends spurious 401s under load: ask once more
                continue
            if exc.status == 403:
                fix = "give the integration's role the REST Web Services permission and "
                fix += "access to customers, accounts, items and the other set-up records"
            elif exc.status != 401:
                fix = f"NetSuite refused a plain read at {where}; run the check again"
            return Row(name, False, f"{method} refused by {where}: {_ns_error(exc)}", fix), None
        except requests.RequestException as exc:
            return Row(
                name, False, f"unreachable: {client.root} ({type(exc).__name__})", _UNREACHABLE_FIX
            ), None
    raise AssertionError("unreachable")


def concurrency_limit(body: dict[str, Any]) -> tuple[int | None, str]:
    """The limit that applies to this integration in a governanceLimits answer, and which it
    is. Oracle's GovernanceLimits Operation (NetSuite help, article_0625010817): an
    ``integrationSpecific`` limit when one is allocated; else (``accountLimit``) the account's
    unallocated limit, "a limit for all integrations without a specifically defined limit";
    ``internal`` shows none, so the account's limit."""
    kind = body.get("integrationLimitType")
    if kind == "integrationSpecific":
        return body.get("integrationConcurrencyLimit"), "the integration's own limit"
    if kind == "accountLimit":
        return (
            body.get("accountUnallocatedConcurrencyLimit"),
            "the account's unallocated limit (none is allocated to the integration)",
        )
    return body.get("accountConcurrencyLimit"), f"the account's limit ({kind})"


def _governance(client: NetSuiteClient, ns: NetSuiteSettings) -> Row:
    name, want = "NetSuite concurrency", ns.netsuite_concurrency
    setting = f"LEDGER_NETSUITE_CONCURRENCY={want}"
    try:
        body = client.read(GOVERNANCE_PATH)
    except NetSuiteResponseError as exc:
        return Row(
            name,
            False,
            f"governanceLimits: {_ns_error(exc)}",
            "governanceLimits answers administrators only: compare "
            f"LEDGER_NETSUITE_CONCURRENCY with {INTEGRATION_GOVERNANCE}, or run the check "
            "with an administrator's credentials",
        )
    except requests.RequestException as exc:
        return Row(
            name, False, f"unreachable: {client.root} ({type(exc).__name__})", _UNREACHABLE_FIX
        )
    limit, which = concurrency_limit(body)
    if not isinstance(limit, int):
        return Row(
            name, False, f"governanceLimits gave no limit: {body}", f"see {INTEGRATION_GOVERNANCE}"
        )
    account = body.get("accountConcurrencyLimit")
    if want <= limit:
        return Row(name, True, f"{setting} ≤ {limit}, {which}; account limit {account}")
    return Row(
        name,
        False,
        f"{setting} > {limit}, {which}; account limit {account}",
        f"set LEDGER_NETSUITE_CONCURRENCY to at most {limit} (several sink processes: their "
        f"sum), or allocate more to the integration at {INTEGRATION_GOVERNANCE}",
    )


def _display(record: dict[str, Any]) -> str:
    for key in ("acctName", "itemId", "name", "companyName", "entityId"):
        if record.get(key):
            return f" '{record[key]}'"
    return ""


def _select(value: Any) -> str:
    """A select field's value: NetSuite's REST answers ``{"id": …, "refName": …}``."""
    if isinstance(value, dict):
        return str(value.get("id") or value.get("refName") or "")
    return str(value or "")


def _judge(records: _Records, ref: Ref, ident: str, key: str | None) -> tuple[bool, str]:
    """Whether ``ident`` names what ``ref`` needs, and what was found."""
    if not ident.isdigit():
        return False, f"{ident!r} is not an internal id (digits)"
    found = records.find(ref.types, ident)
    if found is None:
        return False, f"no {' or '.join(ref.types)} with id {ident}"
    rtype, record = found
    desc = f"{rtype} {ident}{_display(record)}"
    if record.get("isInactive") is True:
        return False, f"{desc} is inactive"
    if rtype == "account":
        kind = _select(record.get("acctType"))
        desc += f" ({kind})"
        if ref.acct_types and kind not in ref.acct_types:
            return False, f"{desc} is not {' or '.join(ref.acct_types)}"
        if not ref.acct_types and kind in NOT_POSTING:
            return False, f"{desc} is not a posting account"
    if rtype == "currency" and key is not None:
        symbol = str(record.get("symbol") or "")
        if symbol and symbol.upper() != key.upper():
            return False, f"{desc} is {symbol}, not {key}"
    return True, desc


def _ref_row(records: _Records, ref: Ref, value: str | dict[str, str]) -> Row:
    name, var = f"NetSuite {ref.label}", PREFIX + ref.field.upper()
    entries = sorted(value.items()) if isinstance(value, dict) else [(None, value)]
    results = []
    try:
        for key, ident in entries:
            ok, desc = _judge(records, ref, str(ident), key)
            results.append((key, ok, desc if key is None else f"{key} → {desc}"))
    except _Unreachable as exc:
        return Row(name, False, str(exc), _UNREACHABLE_FIX)
    except NetSuiteResponseError as exc:
        return Row(name, False, f"could not read: {_ns_error(exc)}", "run the check again")
    bad = [(key, desc) for key, ok, desc in results if not ok]
    if not bad:
        if ref.field == "netsuite_currency_ids":
            return Row(
                name, True, f"{len(results)} currencies ({', '.join(k or '' for k, *_ in results)})"
            )
        return Row(name, True, ", ".join(desc for _, _, desc in results))
    if isinstance(value, dict):
        keys = ", ".join(str(key) for key, _ in bad)
        fix = f"correct {keys} in {var}: {ref.what}"
    else:
        fix = f"set {var} to {ref.what}"
    return Row(name, False, "; ".join(desc for _, desc in bad), fix)


# --------------------------------------------------------------------------- Stripe
STRIPE_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_KEY_KIND = re.compile(r"^(sk|rk|pk)_(test|live)_")
_STRIPE_BASE_FIX = "check LEDGER_STRIPE_API_BASE (unset: https://api.stripe.com) and the network"


def _stripe_api(cfg: StripeSettings, timeout: float, version: str | None) -> StripeAPI:
    """The product's Stripe client, with a short timeout and no retries (``version`` None:
    the SDK's own). Not the bootstrap's on purpose: a component's client retries and waits,
    a preflight must answer within its timeout."""
    client = stripe.StripeClient(
        cfg.api_key(),
        base_addresses={"api": cfg.stripe_api_base},
        stripe_version=version,
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )
    return StripeAPI(cfg, client=client)


def _probe(api: StripeAPI) -> None:
    api.get("/v1/events", {"limit": 1})  # what the poller reads; cheap


def stripe_checks(cfg: StripeSettings | None, timeout: float) -> list[Row]:
    if cfg is None:
        reason, fix = "the Stripe settings are invalid", "resolve “Stripe settings” first"
        return [
            skipped(n, reason, fix)
            for n in ("Stripe key", "Stripe API version", "Stripe webhook secrets")
        ]
    return [*_stripe_key_and_version(cfg, timeout), _webhook_secrets(cfg)]


def _stripe_key_and_version(cfg: StripeSettings, timeout: float) -> list[Row]:
    key_name, version_name = "Stripe key", "Stripe API version"
    version = cfg.stripe_api_version
    vset = f"LEDGER_STRIPE_API_VERSION={version}"
    version_fix = (
        "set LEDGER_STRIPE_API_VERSION to a Stripe API version; the mapping reads 2024-06-20's "
        "shapes, the version to pin the webhook endpoint to as well"
    )
    if cfg.stripe_api_key is None:
        return [
            Row(
                key_name,
                False,
                "LEDGER_STRIPE_API_KEY not set",
                "set LEDGER_STRIPE_API_KEY to the account's secret key (sk_…) or a restricted "
                "key (rk_…); LEDGER_PROFILE=local gives stripe-mock's",
            ),
            skipped(version_name, "no Stripe key", "resolve “Stripe key” first"),
        ]
    match = _KEY_KIND.match(cfg.stripe_api_key.get_secret_value())
    kind = f"{match[1]}_{match[2]}_… key" if match else "key"
    if match and match[1] == "pk":
        return [
            Row(
                key_name,
                False,
                "a publishable key (pk_…): it cannot read the API",
                "set LEDGER_STRIPE_API_KEY to a secret key (sk_…) or a restricted key (rk_…)",
            ),
            skipped(version_name, "no usable Stripe key", "resolve “Stripe key” first"),
        ]
    where = cfg.stripe_api_base
    if not STRIPE_VERSION.match(version):
        version_row = Row(version_name, False, f"{vset} is not YYYY-MM-DD[.name]", version_fix)
        return [_stripe_key(cfg, timeout, None, kind), version_row]
    try:
        _probe(_stripe_api(cfg, timeout, version))
    except stripe.InvalidRequestError as exc:
        if "version" not in str(exc.user_message or exc).lower():
            return [
                Row(key_name, False, f"GET /v1/events: {exc.user_message}", "run the check again"),
                skipped(version_name, "the probe failed", "resolve “Stripe key” first"),
            ]
        version_row = Row(version_name, False, f"{vset} refused: {exc.user_message}", version_fix)
        return [_stripe_key(cfg, timeout, None, kind), version_row]
    except stripe.StripeError as exc:
        return [
            _stripe_key_error(exc, kind, where),
            skipped(version_name, "the key was not accepted", "resolve “Stripe key” first"),
        ]
    return [
        Row(key_name, True, f"{kind} accepted by {where} (GET /v1/events)"),
        Row(version_name, True, f"{vset} accepted"),
    ]


def _stripe_key(cfg: StripeSettings, timeout: float, version: str | None, kind: str) -> Row:
    try:
        _probe(_stripe_api(cfg, timeout, version))
    except stripe.StripeError as exc:
        return _stripe_key_error(exc, kind, cfg.stripe_api_base)
    return Row("Stripe key", True, f"{kind} accepted by {cfg.stripe_api_base} (GET /v1/events)")


def _stripe_key_error(exc: stripe.StripeError, kind: str, where: str) -> Row:
    name = "Stripe key"
    if isinstance(exc, stripe.AuthenticationError):
        return Row(
            name,
            False,
            f"{kind} refused by {where} (401)",
            "set LEDGER_STRIPE_API_KEY to a valid secret or restricted key of the account "
            "(Stripe Dashboard → Developers → API keys)",
        )
    if isinstance(exc, stripe.PermissionError):
        return Row(
            name,
            False,
            f"{kind} may not read events (403)",
            "give the restricted key read access to Events, Charges, Refunds, Disputes, "
            "Invoices, Credit notes, Customers, Payouts and Balance, and write access to their "
            "metadata, or use a secret key",
        )
    if isinstance(exc, stripe.APIConnectionError):
        return Row(name, False, f"unreachable: {where}", _STRIPE_BASE_FIX)
    status = f"HTTP {exc.http_status} " if exc.http_status else ""
    return Row(
        name, False, f"{status}{exc.user_message or type(exc).__name__}", "run the check again"
    )


def _webhook_secrets(cfg: StripeSettings) -> Row:
    name = "Stripe webhook secrets"
    values = [s.get_secret_value() for s in cfg.stripe_webhook_secrets]
    fix = (
        "set LEDGER_STRIPE_WEBHOOK_SECRETS to the webhook endpoint's signing secret (whsec_…, "
        "Stripe Dashboard → Developers → Webhooks → the endpoint); comma-separated while "
        "rotating"
    )
    if not values:
        return Row(name, False, "LEDGER_STRIPE_WEBHOOK_SECRETS not set", fix)
    bad = [str(i) for i, v in enumerate(values, 1) if not v.startswith("whsec_")]
    if bad:
        return Row(
            name, False, f"secret {', '.join(bad)} of {len(values)} does not start with whsec_", fix
        )
    return Row(
        name, True, f"{len(values)} signing secret{'s' if len(values) > 1 else ''} (whsec_…)"
    )


# --------------------------------------------------------------------------- Kafka
def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def kafka_checks(cfg: KafkaSettings | None, timeout: float) -> list[Row]:
    """The brokers answer; every topic ``ledgerstream topics`` creates exists (the pipeline's,
    their dead-letter topics, the processor's changelogs), with ``LEDGER_TOPIC_PARTITIONS``
    partitions. Three rows whatever the number of topics; a ✖ names each topic concerned."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from ledgerstream import topic_admin

    names = ("Kafka brokers", "Kafka topics", "Kafka partitions")
    if cfg is None:
        fix = "resolve “Kafka settings” first"
        return [skipped(n, "the Kafka settings are invalid", fix) for n in names]
    where = cfg.kafka_bootstrap_servers
    try:
        # log_level 0: "connection refused" is an answer here, not a line per attempt on stderr
        admin = AdminClient({**cfg.client_config(), "log_level": 0})
    except KafkaException as exc:  # librdkafka refuses some settings at once (a missing CA file)
        err = exc.args[0] if exc.args else exc
        reason = err.str() if hasattr(err, "str") else str(err)
        fix = "correct the LEDGER_KAFKA_SECURITY_PROTOCOL / _SASL_* / _SSL_* settings"
        return [
            Row(names[0], False, f"the Kafka client refuses its settings: {reason}", fix),
            *(
                skipped(n, "the Kafka client cannot be made", "resolve “Kafka brokers” first")
                for n in names[1:]
            ),
        ]
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        reason = err.str() if hasattr(err, "str") else str(err)
        fix = "resolve “Kafka brokers” first"
        return [
            Row(
                names[0],
                False,
                f"no broker answers at {where} ({reason})",
                "check LEDGER_KAFKA_BOOTSTRAP_SERVERS (or KAFKA_BOOTSTRAP_SERVERS) and "
                "LEDGER_KAFKA_SECURITY_PROTOCOL / _SASL_* / _SSL_CA_LOCATION",
            ),
            *[skipped(n, "no broker answers", fix) for n in names[1:]],
        ]
    count = len(metadata.brokers)
    rows = [Row(names[0], True, f"{count} broker{'s' if count != 1 else ''} at {where}")]
    want = cfg.topic_partitions
    planned = [topic for topic, _config in topic_admin.planned()]
    missing, counts = [], {}
    for topic in planned:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            missing.append(topic)
        else:
            counts[topic] = len(found.partitions)
    prefix = f"prefix '{cfg.topic_prefix}'" if cfg.topic_prefix else "no prefix"
    if missing:
        detail = (
            f"none of the {len(planned)} topics exists ({prefix})"
            if len(missing) == len(planned)
            else f"missing: {_names(missing)}"
        )
        fix = "run `ledgerstream topics` (creates every missing topic)"
        rows.append(Row(names[1], False, detail, fix))
    else:
        rows.append(
            Row(
                names[1],
                True,
                f"{len(planned)} topics ({prefix}): the pipeline's, their .dlq, the processor's "
                "changelogs",
            )
        )
    wrong = sorted(t for t, n in counts.items() if n != want)
    if not counts:
        rows.append(skipped(names[2], "no topic exists", "resolve “Kafka topics” first"))
    elif wrong:
        found_counts = sorted({counts[t] for t in wrong})
        which = f"all {len(wrong)} topics" if len(wrong) == len(counts) else _names(wrong)
        rows.append(
            Row(
                names[2],
                False,
                f"{which}: {'/'.join(map(str, found_counts))} partitions, "
                f"LEDGER_TOPIC_PARTITIONS={want}",
                "set LEDGER_TOPIC_PARTITIONS to the topics' count; the topics keyed by customer "
                "must all have one count (adding partitions moves keys to other partitions)",
            )
        )
    else:
        rows.append(Row(names[2], True, f"{want} each (LEDGER_TOPIC_PARTITIONS)"))
    return rows


def _safe_url(url: str) -> str:
    """The URL without user:password@."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def registry_checks(cfg: KafkaSettings | None, timeout: float) -> list[Row]:
    """Each topic's value schema is registered (``<topic>-value``), and ``schemas/*.avsc`` is
    compatible with its latest version as the registry judges it (its compatibility check,
    under the subject's compatibility level)."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from ledgerstream.avro import schema_text
    from ledgerstream.topics import ALL

    names = ("Schema registry", "Schema compatibility")
    if cfg is None:
        fix = "resolve “Kafka settings” first"
        return [skipped(n, "the Kafka settings are invalid", fix) for n in names]
    where = _safe_url(cfg.schema_registry_url)
    fix = (
        "check LEDGER_SCHEMA_REGISTRY_URL (or SCHEMA_REGISTRY_URL) and "
        "LEDGER_SCHEMA_REGISTRY_BASIC_AUTH"
    )

    def unreachable(exc: Exception) -> list[Row]:
        return [
            Row(names[0], False, f"no answer from {where} ({type(exc).__name__})", fix),
            skipped(names[1], "the registry does not answer", "resolve “Schema registry” first"),
        ]

    conf = {**cfg.registry_config(), "timeout": timeout, "max.retries": 0}
    specs = [(f"{cfg.topic(s.name)}-value", s.schema) for s in ALL if s.schema is not None]
    # each subject asked for by name: a listing of every subject is capped (Apicurio answers
    # GET /subjects with at most 1000) and a shared registry easily holds more
    absent = []
    try:
        client = SchemaRegistryClient(conf)
        for subject, _ in specs:
            try:
                client.get_latest_version(subject)
            except SchemaRegistryError as exc:
                if exc.http_status_code != 404:
                    return [
                        Row(names[0], False, f"{where} refused: {exc}", fix),
                        skipped(
                            names[1], "the registry refused", "resolve “Schema registry” first"
                        ),
                    ]
                absent.append(subject)
    except Exception as exc:  # noqa: BLE001 - httpx, a malformed URL
        return unreachable(exc)
    if absent:
        row = Row(names[0], False, f"not registered: {_names(absent)}", "run `ledgerstream topics`")
    else:
        row = Row(names[0], True, f"{len(specs)} value schemas registered at {where}")
    incompatible, errors = [], []
    for subject, schema in specs:
        if subject in absent:
            continue
        try:
            if not client.test_compatibility(subject, Schema(schema_text(schema), "AVRO")):
                incompatible.append(f"schemas/{schema}.avsc ({subject})")
        except SchemaRegistryError as exc:
            errors.append(f"{subject}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the registry stopped answering
            return unreachable(exc)
    compared = len(specs) - len(absent)
    if errors:
        compat = Row(names[1], False, f"the check failed for {'; '.join(errors)}", fix)
    elif incompatible:
        compat = Row(
            names[1],
            False,
            f"incompatible with the registered version: {_names(incompatible)}",
            "make the change compatible before deploying (a new field needs a default); "
            "`ledgerstream topics` registers it then",
        )
    elif compared == 0:
        compat = skipped(names[1], "no schema is registered", "resolve “Schema registry” first")
    else:
        unregistered = f" ({len(absent)} not registered, not compared)" if absent else ""
        compat = Row(
            names[1],
            True,
            f"{compared} schemas/*.avsc compatible with the registered versions{unregistered}",
        )
    return [row, compat]
