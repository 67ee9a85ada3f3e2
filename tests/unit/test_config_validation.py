"""Configuration is validated at declaration and start, with one-line errors naming the fix (issue 10, item 9)."""

from __future__ import annotations

import socket
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import pit_streams
from pit_streams.cli import main
from pit_streams.errors import DeclarationError


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"handler_retries": -1}, "handler_retries must be a whole number >= 0"),
        ({"handler_retries": 1.5}, "handler_retries must be a whole number >= 0"),
        ({"handler_retries": True}, "handler_retries must be a whole number >= 0"),
        ({"tenants": "demo"}, "tenants must be a collection of tenant names, e.g. tenants={'demo'}"),
        ({"tenants": ["demo", ""]}, "tenants must be non-empty strings"),
        ({"tenants": [1]}, "tenants must be non-empty strings"),
        ({"dedupe_ttl": timedelta(0)}, "dedupe_ttl must be a positive timedelta"),
        ({"dedupe_ttl": timedelta(seconds=-1)}, "dedupe_ttl must be a positive timedelta"),
        ({"retry_backoff": timedelta(seconds=-1)}, "retry_backoff must be a timedelta >= 0"),
        ({"handler_timeout": timedelta(0)}, "handler_timeout must be a positive timedelta"),
        ({"handler_timeout": 30}, "handler_timeout must be a positive timedelta"),
    ],
)
def test_bad_app_settings_are_declaration_errors(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(DeclarationError) as exc:
        pit_streams.App("cfg-test", **kwargs)  # type: ignore[arg-type]
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_good_settings_pass_and_tenants_become_a_set() -> None:
    app = pit_streams.App("cfg-test", tenants=["demo", "acme"], handler_retries=0, retry_backoff=timedelta(0))
    assert app.tenants == frozenset({"demo", "acme"})
    assert app.handler_timeout == timedelta(seconds=30)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_bad_health_port_env_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIT_HEALTH_PORT", "abc")
    assert main(["worker", "-A", "apps.nav", "--broker", "127.0.0.1:1"]) == 2
    err = one_line_error(capsys)
    assert err.startswith("pit-streams: PIT_HEALTH_PORT='abc'") and "--health-port" in err


def test_bad_checkpoint_interval_env_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIT_CHECKPOINT_INTERVAL_MS", "0.5s")
    assert main(["worker", "-A", "apps.nav", "--broker", "127.0.0.1:1"]) == 2
    err = one_line_error(capsys)
    assert err.startswith("pit-streams: PIT_CHECKPOINT_INTERVAL_MS='0.5s'") and "--checkpoint-interval-ms" in err


@pytest.mark.parametrize("value", ["-1", "ten", "60001"])
def test_bad_checkpoint_interval_option_is_one_usage_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["worker", "-A", "apps.nav", "--checkpoint-interval-ms", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--checkpoint-interval-ms" in err and "from 0 to 60000" in err


def _app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> str:
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_syntax_error_in_the_app_module_is_file_line_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    name = _app_module(tmp_path, monkeypatch, "broken_syntax_app", "import pit_streams\n\ndef f(:\n    pass\n")
    assert main(["worker", "-A", name, "--broker", "127.0.0.1:1"]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"pit-streams: {tmp_path / (name + '.py')}:3: ")


def test_import_error_inside_the_app_module_is_file_line_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    name = _app_module(tmp_path, monkeypatch, "broken_import_app", "import pit_streams\nimport no_such_pkg_x\n")
    assert main(["worker", "-A", name, "--broker", "127.0.0.1:1"]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"pit-streams: {tmp_path / (name + '.py')}:2: ModuleNotFoundError")
    assert "no_such_pkg_x" in err


def test_a_missing_app_module_still_says_how_to_name_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["worker", "-A", "no_such_app_module", "--broker", "127.0.0.1:1"]) == 2
    assert "pass -A package.module" in one_line_error(capsys)


async def test_health_port_in_use_is_one_line_naming_the_option() -> None:
    from pit_streams.errors import ConfigError
    from pit_streams.observe import HealthServer
    from pit_streams.runtime.metrics import Metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as exc:
            await HealthServer(Metrics(), "g", port, host="127.0.0.1").start()
    message = str(exc.value)
    assert "\n" not in message and "--health-port" in message and "PIT_HEALTH_PORT" in message
