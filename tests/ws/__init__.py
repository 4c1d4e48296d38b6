"""Tests of trio_upgrade.ws (layer 1: WebSocket sessions, standalone server, client)."""
