"""Tests of trio_upgrade.core (layer 0)."""
