"""Worker settings, the shipped worker.toml, the public names and the CLI's argument handling."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

import runtime.worker
from runtime.config import ConfigError
from runtime.core.policy import RunPolicy
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
    """A job needs a conversation or messages, not both on Assistants, and cannot override
    worker-owned options."""
    from pydantic import ValidationError

    from runtime.worker import Job, Message

    with pytest.raises(ValidationError, match="conversation_id or at least one message"):
        Job(assistant_id="a")
    with pytest.raises(ValidationError, match="only for a new thread"):
        Job(assistant_id="a", conversation_id="t", messages=(Message(content="x"),))
    with pytest.raises(ValidationError, match="may not set stream"):
        Job(assistant_id="a", conversation_id="t", run_options={"stream": False})
    with pytest.raises(ValidationError, match="may not set agent, conversation, previous"):
        Job(
            assistant_id="a",
            conversation_id="t",
            run_options=dict.fromkeys(("agent", "conversation", "previous")),
        )
    job = Job(assistant_id="a", conversation_id="t", run_options={"temperature": 0.2})
    assert job.id.startswith("job_") and job.run_options == {"temperature": 0.2}


def test_a_record_with_the_older_thread_id_reads_as_the_neutral_references() -> None:
    """Records stored before the neutral names: ``thread_id`` holding a response id is the run
    to continue after, any other id the conversation; results and progress read it too."""
    from runtime.worker.models import JobResult, Progress, decode_job

    job, ignored = decode_job(
        '{"id": "j", "protocol": "responses", "thread_id": "resp_1", '
        '"messages": [{"content": "hi"}]}'
    )
    assert (job.previous_run_id, job.conversation_id, ignored) == ("resp_1", None, ())
    job, _ = decode_job('{"id": "j", "assistant_id": "a", "thread_id": "thread_1"}')
    assert (job.conversation_id, job.previous_run_id) == ("thread_1", None)
    assert Progress.model_validate({"thread_id": "conv_1"}).conversation_id == "conv_1"
    stored = {
        "job_id": "j",
        "run_id": "r",
        "thread_id": "thread_1",
        "status": "completed",
        "attempts": 1,
        "timings": dict.fromkeys(
            ("submitted_at", "started_at", "finished_at", "run_seconds", "total_seconds"), 0.0
        ),
    }
    result = JobResult.model_validate(stored)
    assert result.conversation_id == "thread_1"
    assert "thread_id" not in result.model_dump() and "conversation_id" in result.model_dump()


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
    assert "--assistant ID is required" in capsys.readouterr().err
    responses = tmp_path / "r.toml"
    responses.write_text(f'protocol = "responses"\n{sqlite.read_text()}')
    assert submit_main(["--config", str(responses), "--job-id", "r-1", "hi"]) == 0
    assert submit_main(["--config", str(responses), "--thread", "resp_1", "more"]) == 0
    assert submit_main(["--config", str(responses), "--previous-run", "resp_1", "m"]) == 0
    assert submit_main(["--config", str(responses), "--conversation", "conv_1", "m"]) == 0
    assert jobs_main(["--config", str(responses), "r-1"]) == 0
    assert '"protocol": "responses"' in capsys.readouterr().out


def test_responses_job_validation() -> None:
    """Continuing a conversation with messages, or after a run, needs protocol='responses'
    (and one reference, not both); an explicit assistants job needs assistant_id; input and
    previous_response_id are worker-owned."""
    from pydantic import ValidationError

    from runtime.worker import Job, Message

    msg = (Message(content="x"),)
    assert Job(protocol="responses", previous_run_id="resp_1", messages=msg).assistant_id is None
    assert Job(protocol="responses", conversation_id="conv_1", messages=msg).messages == msg
    with pytest.raises(ValidationError, match="set protocol='responses'"):
        Job(previous_run_id="resp_1", messages=msg)
    with pytest.raises(ValidationError, match="only for a new thread"):
        Job(conversation_id="conv_1", messages=msg)
    with pytest.raises(ValidationError, match="not both"):
        Job(protocol="responses", conversation_id="c", previous_run_id="r", messages=msg)
    with pytest.raises(ValidationError, match="needs assistant_id"):
        Job(protocol="assistants", messages=msg)
    with pytest.raises(ValidationError, match="may not set input, previous_response_id"):
        Job(messages=msg, run_options={"input": "y", "previous_response_id": "resp_1"})


def test_heartbeat_not_below_the_lease_is_rejected_naming_both_keys(tmp_path: Path) -> None:
    """heartbeat_s >= lease_s would let every lease lapse mid-job: a ConfigError at load."""
    config = tmp_path / "w.toml"
    config.write_text("[queue]\nlease_s = 5\nheartbeat_s = 5\n")
    with pytest.raises(ConfigError) as err:
        load_worker_settings(config)
    text = str(err.value)
    assert "queue.heartbeat_s (5)" in text and "queue.lease_s (5)" in text
    with pytest.raises(ConfigError, match=r"queue\.heartbeat_s"):
        load_worker_settings(None, queue={"lease_s": 2.0, "heartbeat_s": 3.0})
    assert load_worker_settings(None, queue={"lease_s": 2.0, "heartbeat_s": 0.5})


def test_redis_url_password_is_masked_in_reprs_and_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password in the Redis URL never shows in repr/str of the settings, and log redaction
    masks it in URLs with and without a user name and on its own."""
    from runtime.logging import redact

    monkeypatch.setenv("RUNTIME_WORKER_QUEUE__REDIS__URL", "redis://:Tr0ub4dor-pw@10.0.0.5:6379/0")
    settings = load_worker_settings(None)
    assert settings.queue.redis.url == "redis://:Tr0ub4dor-pw@10.0.0.5:6379/0"
    for text in (repr(settings), str(settings), repr(settings.queue), repr(settings.queue.redis)):
        assert "Tr0ub4dor" not in text and "10.0.0.5:6379" in text
    assert redact("redis://:hunter2@h:1/0") == "redis://:***@h:1/0"
    assert redact("rediss://app:hunter2@h:1/0") == "rediss://app:***@h:1/0"
    assert "Tr0ub4dor" not in redact("AUTH failed: Tr0ub4dor-pw")  # registered at load


def test_sqlite_path_in_a_config_file_is_relative_to_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`submit` run from two different directories with one config file uses one queue: the
    relative path is resolved against the file's directory (env paths stay cwd-relative)."""
    conf_dir, elsewhere, other = tmp_path / "conf", tmp_path / "a", tmp_path / "b"
    for directory in (conf_dir, elsewhere, other):
        directory.mkdir()
    config = conf_dir / "worker.toml"
    config.write_text('[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "var/q.db"\n')
    monkeypatch.chdir(elsewhere)
    assert Path(load_worker_settings(config).queue.sqlite.path) == conf_dir / "var" / "q.db"
    base = ["--config", str(config), "--assistant", "asst_1"]
    assert submit_main([*base, "--job-id", "from-a", "hi"]) == 0
    monkeypatch.chdir(other)
    assert submit_main([*base, "--job-id", "from-b", "hi"]) == 0
    capsys.readouterr()
    assert jobs_main(["--config", str(config), "--json"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(listed) == 2
    assert (conf_dir / "var" / "q.db").is_file()
    assert not (elsewhere / "var").exists() and not (other / "var").exists()
    monkeypatch.setenv("RUNTIME_WORKER_QUEUE__SQLITE__PATH", "env/q.db")
    assert load_worker_settings(config).queue.sqlite.path == "env/q.db"


def test_health_port_in_use_is_a_one_line_error_with_exit_2(tmp_path: Path) -> None:
    """A second worker on a node whose health port is taken exits 2 with one clear line
    naming the address and the setting, not an OSError traceback."""
    import os
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "w.toml"
        config.write_text(
            f'[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "q.db"\n'
            f'[http]\nenabled = true\nport = {port}\n[api]\nbase_url = "http://127.0.0.1:9/v1"\n'
            'api_key = "sk-test-port-in-use"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME_WORKER_")}
        proc = subprocess.run(
            [sys.executable, "-m", "runtime", "worker", "--config", str(config), "--burst"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert f"127.0.0.1:{port}" in errors[0] and "http.port" in errors[0]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'[worker]\nname = "\xe9"\n', "not UTF-8"),
        (b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested"),
    ],
    ids=["non_utf8", "deeply_nested"],
)
def test_unreadable_worker_toml_is_a_config_error_naming_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """A worker config that is not UTF-8 or is absurdly nested gives ConfigError, no traceback."""
    path = tmp_path / "worker.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_worker_settings(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_job_deadline_bounds_every_run_of_the_worker() -> None:
    """worker.job_deadline_s becomes the runs' total deadline (the shorter of it and the
    policy's), so no job runs forever."""
    settings = runtime.worker.WorkerSettings(worker={"job_deadline_s": 90})
    assert settings.runtime_settings().policy.total_deadline_s == 90
    shorter = runtime.worker.WorkerSettings(
        worker={"job_deadline_s": 90}, policy={"total_deadline_s": 30}
    )
    assert shorter.runtime_settings().policy.total_deadline_s == 30
    assert RunPolicy.from_settings(settings.runtime_settings()).total_deadline_s == 90
