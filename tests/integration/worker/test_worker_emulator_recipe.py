"""The README's two-terminal worker recipe, run as written: `worker --emulator` in one
process, then `assistant create --emulator` and `submit --wait` in a bash shell."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..conftest import InProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG = "config/worker.toml"
_BASH = re.compile(r"^```bash\n(.*?)^```$", re.M | re.S)


def _readme_recipe() -> tuple[str, str]:
    """The README's worker command and the block after it (the second terminal's)."""
    blocks = _BASH.findall((REPO_ROOT / "README.md").read_text())
    (index,) = [i for i, b in enumerate(blocks) if "worker --emulator" in b]
    return blocks[index].strip(), blocks[index + 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNTIME_", "OPENAI_", "AZURE_OPENAI_"))
    }
    # The recipe's file as is; only what would collide with other tests moves.
    env["RUNTIME_WORKER_QUEUE__SQLITE__PATH"] = str(tmp_path / "jobs.db")
    # `python` in the recipe is this interpreter (the one with the package installed).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["RUNTIME_WORKER_API__BASE_URL"] = f"http://127.0.0.1:{port}/v1"
    env["RUNTIME_WORKER_HTTP__PORT"] = "0"
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker exited before its emulator listened"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_worker_emulator_recipe_runs_a_tool_call(tmp_path: Path) -> None:
    """The README's recipe verbatim: the worker in one process; assistant create and submit
    --wait in one bash shell print the job's JSON, whose calculate call returned 42."""
    worker_line, second_terminal = _readme_recipe()
    assert worker_line == f"python -m runtime worker --emulator --config {CONFIG}"
    port = _free_port()
    env = _env(tmp_path, port)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        ["bash", "-c", f"exec {worker_line}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, worker)
        shell = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", second_terminal],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert shell.returncode == 0, shell.stderr + (tmp_path / "worker.log").read_text()
        record = json.loads(shell.stdout)
        assert record["result"]["status"] == "completed"
        assert [c["output"] for c in record["result"]["tool_calls"]] == ["42"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()


def test_worker_emulator_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    """`worker --emulator` when api.base_url's port is taken: exit 2 and a line naming it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _cli(_env(tmp_path, port), "worker", "--emulator", "--burst", "--config", CONFIG)
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in proc.stderr


def _worker_env(tmp_path: Path, port: int) -> dict[str, str | None]:
    """What ``_env`` adds to a subprocess's environment, for a command run in this process."""
    return {
        "RUNTIME_WORKER_QUEUE__SQLITE__PATH": str(tmp_path / "jobs.db"),
        "RUNTIME_WORKER_API__BASE_URL": f"http://127.0.0.1:{port}/v1",
        "RUNTIME_WORKER_HTTP__PORT": "0",
    }


def test_assistant_create_without_a_server_is_one_line(tmp_path: Path, cli: InProcess) -> None:
    """`assistant create --emulator` with no worker running: exit 1 and one line naming the URL
    (the command's logic, in this process; the recipe runs it as a process)."""
    port = _free_port()
    # One attempt: the message is the subject, not the retries before it (about 10 s).
    env = {**_worker_env(tmp_path, port), "RUNTIME_WORKER_RETRY__MAX_ATTEMPTS": "1"}
    proc = cli("assistant", "create", "--emulator", "--config", CONFIG, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], lines


def test_assistant_create_takes_the_files_retry_attempts(tmp_path: Path, cli: InProcess) -> None:
    """`assistant create` against a server that answers 429 (retried: the server did not act)
    tries as often as the file's ``[retry] max_attempts`` says (2 here), then fails in one
    line (in this process)."""
    requests: list[str] = []

    class RateLimited(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests.append(self.path)
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "slow down", "type": "rate_limit_error"}}')

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), RateLimited) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = {
            **_worker_env(tmp_path, server.server_address[1]),
            "RUNTIME_WORKER_RETRY__MAX_ATTEMPTS": "2",
            "RUNTIME_WORKER_RETRY__INITIAL_WAIT_S": "0.01",
            "RUNTIME_WORKER_RETRY__JITTER_S": "0",
        }
        proc = cli("assistant", "create", "--emulator", "--config", CONFIG, env=env)
        server.shutdown()
    assert proc.returncode == 1
    assert requests == ["/v1/assistants", "/v1/assistants"]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
