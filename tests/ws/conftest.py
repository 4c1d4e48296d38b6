"""Fixtures for the WebSocket tests: a trustme CA and matching TLS contexts."""

from __future__ import annotations

import ssl

import pytest
import trustme


@pytest.fixture(scope="session")
def ws_tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ws_server_ssl(ws_tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ws_tls_ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return context


@pytest.fixture
def ws_client_ssl(ws_tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ws_tls_ca.configure_trust(context)
    return context


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "autobahn: runs the Autobahn TestSuite through kosoku (minutes; part of the default run)",
    )
