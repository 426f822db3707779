"""Test tooling (chaos suite, reference booking); product code never imports it."""
