"""Benchmarks: each prints its figures (same-run ratios against a baseline).

They run on the local stack, so with its profile: the NetSuite emulator's set-up ids and
stripe-mock's key (production has no defaults for these).
"""

import os

os.environ.setdefault("LEDGER_PROFILE", "local")
