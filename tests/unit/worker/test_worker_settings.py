"""Worker settings, the shipped worker.toml, the public names and the CLI's argument handling."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

import runtime.worker
from runtime.config import ConfigError
from runtime.worker.cli import jobs_main, submit_main, worker_main
from runtime.worker.settings import (
    DEFAULT_WORKER_CONFIG,
    HttpSettings,
    QueueSettings,
    RedisSettings,
    SqliteSettings,
    WorkerSection,
    build_registry,
    load_worker_settings,
)

SECTIONS: dict[str, type[BaseModel]] = {
    "worker": WorkerSection,
    "queue": QueueSettings,
    "queue.sqlite": SqliteSettings,
    "queue.redis": RedisSettings,
    "http": HttpSettings,
}


def _table(data: dict[str, object], dotted: str) -> dict[str, object]:
    for part in dotted.split("."):
        data = data[part]  # type: ignore[assignment]
    return data


def test_shipped_worker_toml_documents_every_setting_with_its_default() -> None:
    """config/worker.toml lists every worker setting, with the value the code defaults to."""
    data = tomllib.loads(DEFAULT_WORKER_CONFIG.read_text(encoding="utf-8"))
    for dotted, model in SECTIONS.items():
        table = _table(data, dotted)
        defaults = model()
        for name, field in model.model_fields.items():
            assert name in table, f"{dotted}.{name} is missing from worker.toml"
            if isinstance(getattr(defaults, name), BaseModel):
                continue
            assert field.description, f"{dotted}.{name} has no docstring"
            assert table[name] == getattr(defaults, name), f"{dotted}.{name} differs"


def test_env_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RUNTIME_WORKER_* variables (nested with __) win over the TOML file."""
    config = tmp_path / "w.toml"
    config.write_text(
        '[queue]\nbackend = "sqlite"\nlease_s = 5\nheartbeat_s = 1\n[worker]\nconcurrency = 2\n'
    )
    monkeypatch.setenv("RUNTIME_WORKER_QUEUE__BACKEND", "redis")
    monkeypatch.setenv("RUNTIME_WORKER_QUEUE__REDIS__URL", "redis://10.0.0.1:6379/2")
    settings = load_worker_settings(config)
    assert settings.queue.backend == "redis" and settings.queue.lease_s == 5
    assert settings.queue.redis.url == "redis://10.0.0.1:6379/2"
    assert settings.worker.concurrency == 2


def test_invalid_settings_name_the_key(tmp_path: Path) -> None:
    """A bad value raises ConfigError naming the dotted key."""
    config = tmp_path / "w.toml"
    config.write_text('[queue]\nbackend = "kafka"\n[worker]\nconcurrency = 0\n')
    with pytest.raises(ConfigError) as err:
        load_worker_settings(config)
    text = str(err.value)
    assert "queue.backend" in text and "worker.concurrency" in text


def test_api_key_never_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API key from the environment does not appear in the settings' repr."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-worker-key")
    settings = load_worker_settings(None)
    assert settings.api.api_key is not None
    assert "sk-very-secret" not in repr(settings)


async def test_runtime_settings_build_a_client_and_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared sections build the runtime's client and run policy."""
    from runtime import AssistantsClient, RunPolicy

    monkeypatch.setenv("RUNTIME_WORKER_POLICY__MAX_TOOL_ROUNDS", "3")
    settings = load_worker_settings(None)
    shared = settings.runtime_settings()
    assert RunPolicy.from_settings(shared).max_tool_rounds == 3
    async with AssistantsClient.from_settings(shared) as client:
        assert client.base_url == "http://127.0.0.1:8321/v1"


def test_build_registry_accepts_registries_and_callables() -> None:
    """worker.tools entries may name a ToolRegistry or a registering callable."""
    registry = build_registry(["tools.builtin:register_builtins"])
    assert "calculate" in registry
    with pytest.raises(ConfigError):
        build_registry(["tools.builtin:no_such_thing"])


def test_public_names() -> None:
    """runtime.worker exports exactly its documented public API."""
    assert runtime.worker.__all__ == sorted(runtime.worker.__all__)
    for name in runtime.worker.__all__:
        assert hasattr(runtime.worker, name), name


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing config files, the memory backend and bad options are usage errors (exit 2)."""
    assert worker_main(["--config", str(tmp_path / "missing.toml")]) == 2
    memory = tmp_path / "m.toml"
    memory.write_text('[queue]\nbackend = "memory"\n')
    assert worker_main(["--config", str(memory)]) == 2
    sqlite = tmp_path / "s.toml"
    sqlite.write_text(f'[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "{tmp_path}/q.db"\n')
    assert submit_main(["--config", str(sqlite), "--assistant", "a"]) == 2  # no message
    assert (
        submit_main(["--config", str(sqlite), "--assistant", "a", "--option", "x=nope", "hi"]) == 2
    )
    assert "not JSON" in capsys.readouterr().err


def test_cli_submit_then_jobs_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """submit enqueues once per job id and jobs lists it as queued."""
    config = tmp_path / "s.toml"
    config.write_text(f'[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "{tmp_path}/q.db"\n')
    base = ["--config", str(config), "--assistant", "asst_1", "--job-id", "job-a"]
    assert submit_main([*base, "--option", "max_completion_tokens=50", "hello"]) == 0
    assert submit_main([*base, "hello"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ['{"job_id": "job-a", "created": true}', '{"job_id": "job-a", "created": false}']
    assert jobs_main(["--config", str(config)]) == 0
    table = capsys.readouterr().out
    assert "job-a" in table and "queued" in table and "queued=1 running=0 dead=0" in table
    assert jobs_main(["--config", str(config), "job-a"]) == 0
    assert '"max_completion_tokens": 50' in capsys.readouterr().out


def test_job_validation() -> None:
    """A job needs a thread or messages, not both, and cannot override worker-owned options."""
    from pydantic import ValidationError

    from runtime.worker import Job, Message

    with pytest.raises(ValidationError, match="thread_id or at least one message"):
        Job(assistant_id="a")
    with pytest.raises(ValidationError, match="only for a new thread"):
        Job(assistant_id="a", thread_id="t", messages=(Message(content="x"),))
    with pytest.raises(ValidationError, match="may not set stream"):
        Job(assistant_id="a", thread_id="t", run_options={"stream": False})
    job = Job(assistant_id="a", thread_id="t", run_options={"temperature": 0.2})
    assert job.id.startswith("job_") and job.run_options == {"temperature": 0.2}


def test_protocol_setting_is_documented_and_reaches_the_runtime_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """worker.toml shows the top-level protocol with its default; the env var (any case) sets
    it, runtime_settings() carries it, and submit needs --assistant only for assistants."""
    from runtime.worker.settings import WorkerSettings

    data = tomllib.loads(DEFAULT_WORKER_CONFIG.read_text(encoding="utf-8"))
    field = WorkerSettings.model_fields["protocol"]
    assert data["protocol"] == field.default == "assistants" and field.description
    monkeypatch.setenv("RUNTIME_WORKER_PROTOCOL", "Responses")
    settings = load_worker_settings(DEFAULT_WORKER_CONFIG)
    assert settings.protocol == "responses"
    assert settings.runtime_settings().protocol == "responses"
    monkeypatch.delenv("RUNTIME_WORKER_PROTOCOL")
    sqlite = tmp_path / "s.toml"
    sqlite.write_text(f'[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "{tmp_path}/q.db"\n')
    assert submit_main(["--config", str(sqlite), "hi"]) == 2
    assert "needs assistant_id" in capsys.readouterr().err
    responses = tmp_path / "r.toml"
    responses.write_text(f'protocol = "responses"\n{sqlite.read_text()}')
    assert submit_main(["--config", str(responses), "--job-id", "r-1", "hi"]) == 0
    assert submit_main(["--config", str(responses), "--thread", "resp_1", "more"]) == 0
    assert jobs_main(["--config", str(responses), "r-1"]) == 0
    assert '"protocol": "responses"' in capsys.readouterr().out


def test_responses_job_validation() -> None:
    """Continuing with thread_id plus messages needs protocol='responses'; an explicit
    assistants job needs assistant_id; input and previous_response_id are worker-owned."""
    from pydantic import ValidationError

    from runtime.worker import Job, Message

    msg = (Message(content="x"),)
    assert Job(protocol="responses", thread_id="resp_1", messages=msg).assistant_id is None
    with pytest.raises(ValidationError, match="only for a new thread"):
        Job(thread_id="resp_1", messages=msg)
    with pytest.raises(ValidationError, match="needs assistant_id"):
        Job(protocol="assistants", messages=msg)
    with pytest.raises(ValidationError, match="may not set input, previous_response_id"):
        Job(messages=msg, run_options={"input": "y", "previous_response_id": "resp_1"})
