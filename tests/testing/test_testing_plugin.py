"""The pytest plugin as users meet it; docs/testing.md: exports, code blocks, the example."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import trio_upgrade.testing

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"

TRIO_INI = """
[pytest]
trio_mode = true
filterwarnings = error
"""


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def example_files() -> dict[str, str]:
    """The files of the complete example: each block preceded by a ``<!-- file: name -->`` line."""
    found = re.findall(
        r"<!-- file: ([\w.]+) -->\n```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL
    )
    return dict(found)


# The plugin -------------------------------------------------------------------------


def test_the_plugin_is_registered_through_the_pytest11_entry_point(
    pytestconfig: pytest.Config,
) -> None:
    points = [
        point
        for point in importlib.metadata.entry_points(group="pytest11")
        if point.name == "trio_upgrade"
    ]
    assert [point.value for point in points] == ["trio_upgrade.testing._plugin"]
    assert pytestconfig.pluginmanager.hasplugin("trio_upgrade")


def test_loading_the_plugin_imports_no_client_code() -> None:
    """The plugin costs what `import trio_upgrade` costs: the harness loads only when used."""
    code = (
        "import sys, trio_upgrade.testing._plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith('trio_upgrade.testing.')"
        " or m.split('.')[0] in ('httpx', 'websockets')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['trio_upgrade.testing._plugin']"


def test_a_project_that_does_not_use_the_plugin_is_unaffected(pytester: pytest.Pytester) -> None:
    """No fixture named `app`, a sync and a Trio test, warnings as errors: all pass."""
    pytester.makeini(TRIO_INI)
    pytester.makepyfile(
        test_plain="""
        import trio

        def test_sync():
            assert True

        async def test_trio():
            await trio.sleep(0)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_the_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_INI)
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(
        ["app_client -- *", "*in-memory client of the ``app`` fixture*", "app_server -- *"]
    )


def test_app_client_without_an_app_fixture_says_what_is_missing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(TRIO_INI)
    pytester.makepyfile(
        test_missing="""
        async def test_it(app_client):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'app' not found*"])


def test_user_fixtures_and_a_module_level_import_of_the_client(
    pytester: pytest.Pytester,
) -> None:
    """A user's `app` fixture feeds both fixtures; importing AppClient does not trip collection."""
    pytester.makeini(TRIO_INI)
    pytester.makeconftest(
        """
        import pytest
        from trio_upgrade.http import Response, Router

        @pytest.fixture
        def app():
            router = Router()

            @router.get("/")
            async def index(request):
                return Response.text("from the user's app")

            return router
        """
    )
    pytester.makepyfile(
        test_user="""
        import trio
        from trio_upgrade.testing import AppClient, ClientResponse, LiveServer

        async def test_in_memory(app_client):
            assert isinstance(app_client, AppClient)
            response = await app_client.get("/")
            assert isinstance(response, ClientResponse)
            assert response.text == "from the user's app"

        async def test_live(app_server):
            assert isinstance(app_server, LiveServer)
            stream = await trio.open_tcp_stream(app_server.host, app_server.port)
            async with stream:
                await stream.send_all(
                    b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n"
                )
                data = b""
                while chunk := await stream.receive_some():
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
            assert data.endswith(b"from the user's app")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


# docs/testing.md ----------------------------------------------------------------------


def test_every_python_block_compiles() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 10
    for block in blocks:
        compile(block, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_exports_are_exactly_the_documented_names() -> None:
    text = DOC.read_text()
    reference = text[text.index("## Reference") :]
    documented = set(re.findall(r"^- `(\w+)", reference, flags=re.MULTILINE))
    documented.discard("pytest")
    assert documented == set(trio_upgrade.testing.__all__)
    for name in trio_upgrade.testing.__all__:
        value = getattr(trio_upgrade.testing, name)
        assert name in dir(trio_upgrade.testing)
        if name != "RequestContent":
            assert value.__doc__, name
    with pytest.raises(AttributeError):
        _ = trio_upgrade.testing.NoSuchName


def test_the_complete_example_passes_as_a_user_project(pytester: pytest.Pytester) -> None:
    """myapp.py, conftest.py and test_myapp.py from the docs, run by pytest in a subprocess."""
    files = example_files()
    assert set(files) == {"myapp.py", "conftest.py", "test_myapp.py"}
    pytester.makeini(TRIO_INI)
    for name, source in files.items():
        pytester.path.joinpath(name).write_text(source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(
        passed=len(re.findall(r"^async def test_", files["test_myapp.py"], re.M))
    )
