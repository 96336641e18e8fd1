"""Settings: TOML file + environment + overrides, typed errors, secrets kept out of text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from runtime.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    Settings,
    load_settings,
)
from runtime.logging import redact

REPO_ROOT = Path(__file__).resolve().parents[2]
TOML_PATH = REPO_ROOT / "config" / "runtime.toml"
SECRET = "sk-test-Zq8Lr2Vw9Xk4Mn7Pt1"
AZURE_SECRET = "az0123456789abcdefSECRETkey"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without RUNTIME_*, OPENAI_* or AZURE_OPENAI_* variables."""
    for name in list(os.environ):
        if name.startswith(("RUNTIME_", "OPENAI_", "AZURE_OPENAI_")):
            monkeypatch.delenv(name)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runtime.toml"
    path.write_text(text, encoding="utf-8")
    return path


def section_fields() -> list[tuple[str | None, str]]:
    """(section, key) for every setting; section None for top-level scalars, a dotted name
    for a nested table (``policy.usage_limits``). Tables keyed by name (``[prices]``) are
    checked on their own."""
    fields: list[tuple[str | None, str]] = []

    def visit(section: str, model: type[BaseModel]) -> None:
        for key, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                visit(f"{section}.{key}", annotation)
            else:
                fields.append((section, key))

    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if name in KEYED_TABLES:
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            visit(name, annotation)
        else:
            fields.append((None, name))
    return fields


KEYED_TABLES = ("prices", "rate_limits")


def table_of(data: dict[str, Any], section: str | None) -> dict[str, Any]:
    for part in section.split(".") if section else ():
        data = data.get(part, {})
    return data


def default_of(defaults: dict[str, Any], section: str | None, key: str) -> Any:
    return table_of(defaults, section)[key]


# --- defaults and the shipped file -------------------------------------------------------


def test_repo_toml_is_the_default_path() -> None:
    """The module looks for the repository's config/runtime.toml, and it is shipped."""
    assert DEFAULT_CONFIG_PATH == TOML_PATH
    assert TOML_PATH.is_file()


def test_defaults_equal_toml_values() -> None:
    """Loading the shipped TOML gives exactly the built-in defaults."""
    from_file = load_settings(TOML_PATH)
    assert from_file.model_dump() == Settings().model_dump()
    assert load_settings().model_dump() == Settings().model_dump()


def test_toml_sets_every_non_null_default_and_comments_out_unset_ones() -> None:
    """Each setting with a default is written in the file; only None defaults are absent."""
    data = tomllib.loads(TOML_PATH.read_text(encoding="utf-8"))
    defaults = Settings().model_dump()
    for name in KEYED_TABLES:
        assert data.get(name) == defaults[name] == {}, f"[{name}] is empty by default"
    for section, key in section_fields():
        table = table_of(data, section)
        default = default_of(defaults, section, key)
        if default is None:
            assert key not in table, f"{section}.{key} is unset by default"
        else:
            assert table.get(key) == default, f"{section}.{key}"


def test_toml_documents_every_setting_with_a_comment_above() -> None:
    """Every key (set or commented out) appears once with a one-line comment right above it."""
    lines = TOML_PATH.read_text(encoding="utf-8").splitlines()
    assignment = re.compile(r"^#?\s*([a-z_]+)\s*=")
    for section, key in section_fields():
        header = f"[{section}]" if section else None
        start = lines.index(header) + 1 if header else 0
        end = next(
            (i for i in range(start, len(lines)) if lines[i].startswith("[")),
            len(lines),
        )
        hits = [
            i
            for i in range(start, end)
            if (m := assignment.match(lines[i])) is not None and m.group(1) == key
        ]
        assert len(hits) == 1, f"{section}.{key} in the file"
        above = lines[hits[0] - 1]
        assert above.startswith("# ") and not assignment.match(above), f"comment on {key}"


def test_defaults_without_a_file_as_from_a_wheel(tmp_path: Path) -> None:
    """Installed without config/ (as from a wheel), load_settings() falls back to defaults."""
    package = tmp_path / "site" / "runtime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name in ("config.py", "logging.py"):
        shutil.copy(REPO_ROOT / "runtime" / name, package / name)
    script = (
        "import runtime.config as c; s = c.load_settings(); "
        "assert not c.DEFAULT_CONFIG_PATH.exists(), c.DEFAULT_CONFIG_PATH; "
        f"assert c.__file__.startswith({str(package)!r}), c.__file__; "
        "print(s.policy.max_tool_rounds, s.api.api_version)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME_")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["16", "2024-08-01-preview"]


def test_runtime_config_env_var_selects_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUNTIME_CONFIG names the file read when no path is given."""
    path = write_toml(tmp_path, '[policy]\nmax_tool_rounds = 7\nbusy_thread = "cancel"\n')
    monkeypatch.setenv("RUNTIME_CONFIG", str(path))
    settings = load_settings()
    assert settings.policy.max_tool_rounds == 7
    assert settings.policy.busy_thread == "cancel"
    assert settings.policy.max_tool_calls == 128  # the rest stays default


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    """An explicit path that does not exist is reported, not silently ignored."""
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


# --- environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [
        ("OPENAI_BASE_URL", "http://127.0.0.1:8321/v1", "base_url"),
        ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com", "azure_endpoint"),
        ("OPENAI_API_VERSION", "2025-01-01-preview", "api_version"),
        ("OPENAI_API_KEY", SECRET, "api_key"),
        ("AZURE_OPENAI_API_KEY", AZURE_SECRET, "azure_api_key"),
    ],
)
def test_vendor_env_vars_override_the_file(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str
) -> None:
    """Each vendor variable lands in its api.* field."""
    monkeypatch.setenv(env, value)
    got = getattr(load_settings(TOML_PATH).api, field)
    if isinstance(got, SecretStr):
        got = got.get_secret_value()
    assert got == value


def test_runtime_nested_env_vars_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUNTIME_<SECTION>__<KEY> and RUNTIME_<KEY> beat the TOML file."""
    path = write_toml(tmp_path, 'protocol = "assistants"\n[policy]\nmax_tool_rounds = 7\n')
    monkeypatch.setenv("RUNTIME_POLICY__MAX_TOOL_ROUNDS", "4")
    monkeypatch.setenv("RUNTIME_PROTOCOL", "Responses")
    monkeypatch.setenv("RUNTIME_RETRY__RESPECT_RETRY_AFTER", "false")
    monkeypatch.setenv("RUNTIME_LOG__LEVEL", "debug")
    settings = load_settings(path)
    assert settings.policy.max_tool_rounds == 4
    assert settings.protocol == "responses"
    assert settings.retry.respect_retry_after is False
    assert settings.log.level == "DEBUG"


def test_precedence_overrides_then_runtime_env_then_vendor_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keyword overrides > RUNTIME_API__* > OPENAI_*; sibling keys from the file survive."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://vendor.example/v1")
    monkeypatch.setenv("RUNTIME_API__BASE_URL", "http://runtime.example/v1/")
    assert load_settings(TOML_PATH).api.base_url == "http://runtime.example/v1"
    settings = load_settings(TOML_PATH, api={"base_url": "http://override.example/v1"})
    assert settings.api.base_url == "http://override.example/v1"
    assert settings.api.api_version == "2024-08-01-preview"


def test_section_key_shortcut_and_dict_overrides_merge() -> None:
    """policy__max_tool_rounds=3 and policy={...} both override single keys only."""
    settings = load_settings(
        TOML_PATH, policy__max_tool_rounds=3, retry={"max_attempts": 2}, protocol="responses"
    )
    assert settings.policy.max_tool_rounds == 3
    assert settings.policy.max_tool_calls == 128
    assert settings.retry.max_attempts == 2
    assert settings.retry.max_wait_s == 20.0
    assert settings.protocol == "responses"


def test_blank_env_var_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_API_KEY= (empty) leaves the key unset instead of an empty secret."""
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("OPENAI_BASE_URL", " ")
    settings = load_settings(TOML_PATH)
    assert settings.api.api_key is None
    assert settings.api.base_url is None


# --- errors ----------------------------------------------------------------------------------


def test_invalid_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad RUNTIME_* value raises ConfigError (a ValueError) naming key, reason and value."""
    monkeypatch.setenv("RUNTIME_POLICY__MAX_TOOL_ROUNDS", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings(TOML_PATH)
    assert isinstance(info.value, ValueError)
    assert "policy.max_tool_rounds: Input should be greater than 0 (got -1)" in str(info.value)
    assert info.value.source == TOML_PATH


def test_invalid_file_values_are_all_listed(tmp_path: Path) -> None:
    """Several bad keys in the file are reported together, each by its dotted name."""
    path = write_toml(
        tmp_path,
        'protocol = "grpc"\n'
        '[api]\nbase_url = "ftp://host"\nmax_connections = 0\n'
        '[policy]\nbusy_thread = "panic"\nmax_tool_round = 3\n'
        "[retry]\ninitial_wait_s = 30.0\nmax_wait_s = 1.0\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    issues = "\n".join(info.value.issues)
    assert "protocol: Input should be 'assistants' or 'responses' (got grpc)" in issues
    assert "api.base_url: must start with http:// or https:// (got ftp://host)" in issues
    assert "api.max_connections: Input should be greater than 0 (got 0)" in issues
    assert "policy.busy_thread: Input should be 'wait', 'cancel' or 'fail' (got panic)" in issues
    assert "policy.max_tool_round: Extra inputs are not permitted" in issues
    assert "retry: max_wait_s must be >= initial_wait_s" in issues
    assert len(info.value.issues) == 6


def test_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    """A syntax error in the file becomes ConfigError with the position."""
    path = write_toml(tmp_path, "[policy\nmax_tool_rounds = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1"):
        load_settings(path)


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_are_not_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both API keys are SecretStr: repr() and str() of the settings never show them."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_SECRET)
    settings = load_settings(TOML_PATH)
    assert settings.api.api_key is not None
    assert settings.api.api_key.get_secret_value() == SECRET
    for text in (repr(settings), str(settings), repr(settings.api), str(settings.model_dump())):
        assert SECRET not in text
        assert AZURE_SECRET not in text


def test_secrets_are_not_in_error_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors about (or next to) secrets never echo them, nor does the printed traceback."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    path = write_toml(
        tmp_path,
        f'[api]\nazure_api_key = ["{AZURE_SECRET}"]\nmax_connections = -5\n'
        f'[demo]\ndelta_delay_s = "{SECRET}"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "api.azure_api_key:" in message
    assert "demo.delta_delay_s:" in message
    printed = "".join(traceback.format_exception(info.value))
    for text in (message, repr(info.value), printed):
        assert SECRET not in text
        assert AZURE_SECRET not in text


def test_scalar_in_place_of_a_section_is_not_echoed(tmp_path: Path) -> None:
    """`api = "<key>"` (a misplaced key) is reported without its value."""
    path = write_toml(tmp_path, f'api = "{AZURE_SECRET}"\n')
    with pytest.raises(ConfigError, match=r"api: Input should be a valid dictionary") as info:
        load_settings(path)
    assert AZURE_SECRET not in str(info.value)


def test_loaded_keys_are_registered_for_log_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings() registers configured keys, so logs mask them even without sk- shape."""
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_SECRET)
    load_settings(TOML_PATH)
    assert redact(f"header api {AZURE_SECRET}") == "header api ***"


# --- properties ------------------------------------------------------------------------------


def test_uses_azure_and_has_remote_server() -> None:
    """uses_azure follows the endpoint; has_remote_server needs an address and a key."""
    assert not Settings().uses_azure
    assert not Settings().has_remote_server
    openai = load_settings(TOML_PATH, api={"base_url": "https://api.example/v1"})
    assert not openai.has_remote_server  # no key
    openai = load_settings(TOML_PATH, api={"base_url": "https://api.example/v1", "api_key": SECRET})
    assert openai.has_remote_server and not openai.uses_azure
    azure = load_settings(
        TOML_PATH,
        api={"azure_endpoint": "https://res.openai.azure.com/", "azure_api_key": AZURE_SECRET},
    )
    assert azure.uses_azure and azure.has_remote_server
    assert azure.api.azure_endpoint == "https://res.openai.azure.com"
    assert azure.effective_api_key is not None
    assert azure.effective_api_key.get_secret_value() == AZURE_SECRET


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading (they are shared across tasks)."""
    settings = load_settings(TOML_PATH)
    with pytest.raises(ValidationError):
        settings.policy.max_tool_rounds = 1  # type: ignore[misc]


def test_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    """Arrays or inline tables nested past the parser's depth give ConfigError naming the
    file and the reason, not a RecursionError traceback."""
    for text in ("x = " + "[" * 5000 + "]" * 5000, "x = " + "{a = " * 3000 + "1" + "}" * 3000):
        path = write_toml(tmp_path, "[policy]\n" + text + "\n")
        with pytest.raises(ConfigError, match="nested too deeply") as info:
            load_settings(path)
        assert info.value.source == path and str(path) in str(info.value)


def test_non_utf8_toml_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 gives ConfigError with the file, the byte and its line."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[api]\norganization = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.source == path
    assert info.value.issues == ("not UTF-8 text: byte 0xe9 on line 2 cannot be decoded",)


def test_deeply_nested_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RUNTIME_<SECTION> JSON value nested too deeply gives ConfigError, not RecursionError."""
    monkeypatch.setenv("RUNTIME_POLICY", "[" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(TOML_PATH)


def test_unknown_user_in_config_path_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ~user path for a user that does not exist gives ConfigError, not RuntimeError."""
    monkeypatch.setenv("RUNTIME_CONFIG", "~no-such-user-4711/runtime.toml")
    with pytest.raises(ConfigError, match="no-such-user-4711"):
        load_settings()


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    """A config file that exists but cannot be read gives ConfigError with the OS reason."""
    path = write_toml(tmp_path, "[policy]\n")
    path.chmod(0)
    try:
        if not os.access(path, os.R_OK):
            with pytest.raises(ConfigError, match="cannot read the config file: Permission denied"):
                load_settings(path)
    finally:
        path.chmod(0o600)
    # Readable by permission yet failing on read (and root reads any file): EIO.
    proc_mem = Path("/proc/self/mem")
    if not proc_mem.is_file():
        pytest.skip("no /proc/self/mem to fail a read")
    with pytest.raises(
        ConfigError, match="cannot read the config file: Input/output error"
    ) as info:
        load_settings(proc_mem)
    assert info.value.source == proc_mem
