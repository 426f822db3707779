"""How many NetSuite requests the sink has open at once.

NetSuite limits concurrent requests per account, across every integration, and answers 429
beyond it (under load sometimes a spurious 401 ``INVALID_LOGIN`` instead). The limiter starts at
the configured concurrency (this integration's share) and adapts, additive-increase /
multiplicative-decrease: a throttling answer cuts the limit by a third (at most once per
``cooldown_s``, so one burst counts once); every success adds 1/limit, so it climbs back to the
ceiling after about a limit's worth of clean round trips per step.

Separately, the limiter tells a wrong credential from throttling: 401s with no success in
between are counted, and a run of them (fewer before the first success ever) is fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class AdaptiveLimiter:
    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 1,
        cooldown_s: float = 1.0,
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

    def succeeded(self) -> None:
        with self._cond:
            self._ever_succeeded = True
            self._consecutive_401 = 0
            if self.limit < self.ceiling:
                self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
                self._cond.notify_all()

    def throttle(self) -> None:
        """NetSuite said "too many": shrink the window (once per cooldown)."""
        with self._cond:
            self.throttled += 1
            now = time.monotonic()
            if now - self._last_decrease >= self.cooldown_s:
                self._last_decrease = now
                self.limit = max(float(self.floor), self.limit * 2 / 3)
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
