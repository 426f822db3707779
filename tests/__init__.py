"""The test suite. ``CHECKOUT`` is the root of the source tree the tests run in."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
