"""Settings from flags, TRIO_UPGRADE_* variables and a TOML file: flag > env >
file > default, as --print-config shows; bad values are refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_procs import run_cli

from trio_upgrade._cli import OPTIONS, CLIError, resolve


def test_precedence_is_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('max_body_size = "2k"\nheader_timeout = 4\nkeepalive_timeout = 3\n')
    env = {"TRIO_UPGRADE_MAX_BODY_SIZE": "3k", "TRIO_UPGRADE_HEADER_TIMEOUT": "6"}
    s = resolve("serve", {"max_body_size": 1024}, env, str(config))
    assert (s.max_body_size, s.sources["max_body_size"]) == (1024, "flag")
    assert s.header_timeout == 6.0
    assert s.sources["header_timeout"] == "env TRIO_UPGRADE_HEADER_TIMEOUT"
    assert (s.keepalive_timeout, s.sources["keepalive_timeout"]) == (3.0, f"file {config}")
    assert (s.body_timeout, s.sources["body_timeout"]) == (30.0, "default")


def test_config_file_from_the_environment_and_command_tables(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'access_log = true\nbind = ["127.0.0.1:9000"]\n'
        '[serve]\napp = "web:app"\nbind = ["unix:/tmp/x.sock", "[::1]:9001"]\n'
        '[proxy]\nroute = ["/=http://127.0.0.1:9000"]\n'
    )
    serve = resolve("serve", {}, {"TRIO_UPGRADE_CONFIG": str(config)})
    assert serve.app == "web:app"
    assert serve.bind == ["unix:/tmp/x.sock", "[::1]:9001"]
    assert serve.access_log is True
    proxy = resolve("proxy", {}, {}, str(config))
    assert proxy.route == ["/=http://127.0.0.1:9000"]
    assert proxy.bind == ["127.0.0.1:9000"]


def test_environment_values_are_parsed_like_flags() -> None:
    env = {
        "TRIO_UPGRADE_BIND": "127.0.0.1:1 unix:/tmp/s",
        "TRIO_UPGRADE_ACCESS_LOG": "yes",
        "TRIO_UPGRADE_MAX_BODY_SIZE": "none",
        "TRIO_UPGRADE_WS_MAX_SIZE": "2M",
        "TRIO_UPGRADE_UNIX_MODE": "660",
    }
    s = resolve("serve", {}, env)
    assert s.bind == ["127.0.0.1:1", "unix:/tmp/s"]
    assert s.access_log is True
    assert s.max_body_size is None
    assert s.ws_max_size == 2 * 1024 * 1024
    assert s.unix_mode == 0o660


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("max_body_size = ", "not valid TOML"),
        ("no_such_setting = 1\n", "unknown serve setting 'no_such_setting'"),
        ("route = ['/=http://x']\n", "unknown serve setting 'route'"),
        ("access_log = 3\n", "access_log: expected true or false"),
        ("header_timeout = 'soon'\n", "header_timeout"),
        ("max_header_size = true\n", "max_header_size: expected a string or a number"),
        ("bind = 8000\n", "bind: expected a list of strings"),
        ("serve = 1\n", "[serve] must be a table"),
    ],
)
def test_bad_config_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(CLIError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve("serve", {}, {}, str(config))


def test_bad_environment_values_name_the_variable() -> None:
    with pytest.raises(CLIError, match="TRIO_UPGRADE_HEADER_TIMEOUT"):
        resolve("serve", {}, {"TRIO_UPGRADE_HEADER_TIMEOUT": "-1"})


def test_print_config_is_a_config_file_that_says_where_each_value_came_from(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("keepalive_timeout = 2\n")
    env = {"TRIO_UPGRADE_MAX_BODY_SIZE": "1k"}
    args = ["serve", "demo:app", "--config", str(config), "--workers", "3", "--print-config"]
    result = run_cli(args, tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "workers = 3  # flag" in lines
    assert "max_body_size = 1024  # env TRIO_UPGRADE_MAX_BODY_SIZE" in lines
    assert f"keepalive_timeout = 2.0  # file {config}" in lines
    assert "header_timeout = 10.0  # default" in lines
    # It reads back as a config file with the same values.
    reread = tmp_path / "again.toml"
    reread.write_text(result.stdout)
    again = resolve("serve", {}, {}, str(reread))
    original = resolve("serve", {"workers": 3, "app": "demo:app"}, env, str(config))
    assert again.values == original.values


def test_every_setting_has_an_env_variable_and_a_documented_flag() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for option in OPTIONS:
        assert option.env in docs, option.env
        for flag in option.flags:
            assert f"`{flag}" in docs, flag
