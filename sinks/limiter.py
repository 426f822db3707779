"""How many NetSuite requests the sink has open at once.

NetSuite limits concurrent requests per account, across every integration, and answers 429
beyond it (under load sometimes a spurious 401 ``INVALID_LOGIN`` instead). The limiter starts at
the configured concurrency (this integration's share) and adapts:
- throttling answers that are more than a stray one mean the account has no slot for what the
  sink sends, so the limit drops to one less than the requests the sink had open then (and by
  at least a quarter), at most once per round trip (the running average of successful
  requests' durations, or ``cooldown_s`` before there is one) so that one burst counts once.
  "More than a stray one": the share of throttled answers among the last answers (an
  exponential average over about two windows) reaches ``THROTTLED_SHARE``. A sink above the
  account's limit gets most of its excess refused, far above it; another integration taking a
  slot now and then throttles a few requests at random, and shrinking the window for each of
  those would cost more writes than their retries do (a window cut on every random refusal
  settles far below its size, as AIMD does under random loss);
- a success while the window is full adds ``1 / (2 * limit)``: the limit climbs back one step
  per two windows of clean round trips (it does not grow while the sink is not using it).

Separately, the limiter tells a wrong credential from throttling: 401s with no success in
between are counted, and a run of them (fewer before the first success ever) is fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# the share of throttled answers among the recent ones at which the window shrinks: reached by
# four refusals in a row (a sink whose excess is refused), seldom by stray ones. Simulated with
# a full window of 10 and 5 % of answers throttled at random: the window averages 9.8 (6.75 when
# every refusal shrank it); 10 %: 7.75 (4.3)
THROTTLED_SHARE = 0.15


class AdaptiveLimiter:
    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 1,
        cooldown_s: float = 0.5,
        auth_failures: int = 30,
        auth_failures_before_success: int = 5,
    ):
        if ceiling < 1:
            raise ValueError("concurrency must be at least 1")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.limit = float(ceiling)
        self.cooldown_s = cooldown_s
        self.in_use = 0
        self.max_in_use = 0
        self.throttled = 0
        self.decreases = 0
        self._last_decrease = 0.0
        self.rtt: float | None = None  # running average of successful requests' durations
        # exponential average of the throttled share of answers, over about two windows
        self.throttled_share = 0.0
        self._weight = 1 / (2 * ceiling)
        self._cond = threading.Condition()
        self._auth_failures = auth_failures
        self._auth_failures_before_success = auth_failures_before_success
        self._consecutive_401 = 0
        self._ever_succeeded = False

    @contextmanager
    def slot(self, stop: threading.Event | None = None) -> Iterator[None]:
        with self._cond:
            while self.in_use >= int(self.limit):
                if stop is not None and stop.is_set():
                    raise InterruptedError("sink stopping")
                self._cond.wait(0.2)
            self.in_use += 1
            self.max_in_use = max(self.max_in_use, self.in_use)
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= 1
                self._cond.notify()

    def succeeded(self, duration_s: float | None = None) -> None:
        with self._cond:
            if duration_s is not None:
                self.rtt = duration_s if self.rtt is None else 0.8 * self.rtt + 0.2 * duration_s
            self._ever_succeeded = True
            self._consecutive_401 = 0
            self.throttled_share *= 1 - self._weight
            # in_use still counts this request: the window was full when it is >= the limit
            if self.limit < self.ceiling and self.in_use >= int(self.limit):
                self.limit = min(float(self.ceiling), self.limit + 0.5 / self.limit)
                self._cond.notify_all()

    def throttle(self) -> None:
        """NetSuite said "too many": shrink the window (once per cooldown), unless it is a
        stray refusal among successes."""
        with self._cond:
            self.throttled += 1
            self.throttled_share += self._weight * (1 - self.throttled_share)
            if self.throttled_share < THROTTLED_SHARE:
                return
            now = time.monotonic()
            cooldown = self.cooldown_s if self.rtt is None else max(0.02, self.rtt)
            if now - self._last_decrease >= cooldown:
                self._last_decrease = now
                target = min(self.in_use - 1, self.limit * 0.75)
                self.limit = max(float(self.floor), float(target))
                self.decreases += 1

    def unauthorized(self) -> bool:
        """A 401 arrived. True when the run of them means the credentials are wrong."""
        self.throttle()
        with self._cond:
            self._consecutive_401 += 1
            allowed = (
                self._auth_failures if self._ever_succeeded else self._auth_failures_before_success
            )
            return self._consecutive_401 >= allowed
