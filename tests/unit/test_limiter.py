import threading
import time
from contextlib import ExitStack

import pytest

from ledgerstream.sinks.limiter import AdaptiveLimiter


def test_never_more_slots_than_the_limit() -> None:
    limiter = AdaptiveLimiter(3)
    peak, now = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with limiter.slot():
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.02)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 3 and limiter.max_in_use == 3 and limiter.in_use == 0


def test_throttling_shrinks_to_below_what_was_open_and_full_windows_grow_it_back() -> None:
    limiter = AdaptiveLimiter(10, cooldown_s=60)
    with ExitStack() as held:
        for _ in range(8):
            held.enter_context(limiter.slot())
        for _ in range(5):  # one burst of 429s counts once
            limiter.throttle()
    assert limiter.limit == 7 and limiter.decreases == 1 and limiter.throttled == 5
    for _ in range(50):
        limiter.succeeded()  # nothing open: the sink is not using its window, no growth
    assert limiter.limit == 7
    while limiter.limit < 10:
        with ExitStack() as held:
            for _ in range(int(limiter.limit)):
                held.enter_context(limiter.slot())
            limiter.succeeded()
    assert limiter.limit == 10


def test_floor_is_kept() -> None:
    limiter = AdaptiveLimiter(4, cooldown_s=0)
    for _ in range(20):
        limiter.throttle()
    assert limiter.limit == 1


def test_a_run_of_401s_means_wrong_credentials_fewer_needed_before_any_success() -> None:
    limiter = AdaptiveLimiter(5, auth_failures=4, auth_failures_before_success=2)
    assert not limiter.unauthorized()
    assert limiter.unauthorized()  # 2 in a row, nothing ever succeeded
    limiter = AdaptiveLimiter(5, auth_failures=4, auth_failures_before_success=2)
    limiter.succeeded()
    assert not any(limiter.unauthorized() for _ in range(3))  # spurious 401s under load
    limiter.succeeded()  # a success ends the run
    assert not any(limiter.unauthorized() for _ in range(3))
    assert limiter.unauthorized()


def test_a_stopping_sink_does_not_wait_for_a_slot() -> None:
    limiter = AdaptiveLimiter(1)
    stop = threading.Event()
    stop.set()
    with limiter.slot(), pytest.raises(InterruptedError), limiter.slot(stop):
        pass


def test_stray_refusals_among_successes_keep_the_window_a_run_of_them_shrinks_it() -> None:
    limiter = AdaptiveLimiter(10, cooldown_s=60)
    with ExitStack() as held:
        for _ in range(10):
            held.enter_context(limiter.slot())
        for _ in range(20):  # one answer in twenty throttled: another integration, now and then
            for _ in range(19):
                limiter.succeeded()
            limiter.throttle()
        assert limiter.limit == 10 and limiter.decreases == 0 and limiter.throttled == 20
        for _ in range(4):  # refused in a row: the account has no slot for what the sink sends
            limiter.throttle()
    assert limiter.limit == 7.5 and limiter.decreases == 1
