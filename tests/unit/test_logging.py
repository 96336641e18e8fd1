"""Logging setup: renderer choice, context, levels, secret redaction on every path, and the
dispatcher's lines under the worker's logging."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture, capture_logs

from runtime.logging import (
    ModuleLogger,
    RedactingFilter,
    configure_logging,
    get_logger,
    redact,
    redact_event,
    register_secret,
    reset_logging,
)
from tools import ToolCall, ToolDispatcher, ToolRegistry

KEY = "azkey-0123456789-REGISTERED"  # no sk- shape: only registration can catch it


class TtyStream(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """Each test configures logging itself and leaves no handler or context behind."""
    register_secret(KEY)
    yield
    structlog.contextvars.clear_contextvars()
    reset_logging()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def our_handlers() -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]


# --- renderer, fields, levels --------------------------------------------------------------


def test_auto_format_is_json_when_not_a_tty() -> None:
    """fmt=auto on a non-TTY writes one JSON object per line with level, logger, UTC ISO time."""
    out = io.StringIO()
    configure_logging("INFO", "auto", out)
    get_logger("runtime.test", job="j1").info("tool.finished", name="clock", seconds=0.25)
    [record] = json_lines(out)
    assert record["event"] == "tool.finished"
    assert record["level"] == "info"
    assert record["logger"] == "runtime.test"
    assert record["job"] == "j1"
    assert record["seconds"] == 0.25
    assert record["timestamp"].endswith("Z")
    assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None


def test_auto_format_is_console_on_a_tty() -> None:
    """fmt=auto on a TTY uses the human console renderer, not JSON."""
    out = TtyStream()
    configure_logging("INFO", "auto", out)
    get_logger("runtime.test").info("run.started", run_id="run_1")
    text = out.getvalue()
    assert "run.started" in text
    assert "run_id" in text and "run_1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_explicit_console_without_tty_has_no_colour_codes() -> None:
    """fmt=console on a plain stream renders key=value text without ANSI escapes."""
    out = io.StringIO()
    configure_logging("INFO", "console", out)
    get_logger("runtime.test").warning("retry.scheduled", attempt=2)
    text = out.getvalue()
    assert "retry.scheduled" in text and "attempt=2" in text
    assert "\x1b[" not in text


def test_level_filters_structlog_and_stdlib() -> None:
    """Below-level events from both APIs are dropped."""
    out = io.StringIO()
    configure_logging("warning", "json", out)
    log = get_logger("runtime.test")
    log.info("drop.me")
    logging.getLogger("aiohttp.access").info("drop me too")
    log.warning("keep.me")
    assert [r["event"] for r in json_lines(out)] == ["keep.me"]


def test_contextvars_are_merged() -> None:
    """Fields bound with structlog.contextvars appear on every event."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    structlog.contextvars.bind_contextvars(run_id="run_9", thread_id="thread_9")
    get_logger("runtime.test").info("stream.event")
    [record] = json_lines(out)
    assert record["run_id"] == "run_9"
    assert record["thread_id"] == "thread_9"


def test_configure_is_idempotent_and_replaces_its_own_handler() -> None:
    """Repeated calls keep one handler; a new stream takes over from the old one."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", first)
    configure_logging("INFO", "json", first)
    assert len(our_handlers()) == 1
    log = get_logger("runtime.test")  # made before the switch: must follow it
    log.info("one")
    configure_logging("INFO", "json", second)
    assert len(our_handlers()) == 1
    log.info("two")
    assert [r["event"] for r in json_lines(first)] == ["one"]
    assert [r["event"] for r in json_lines(second)] == ["two"]


def test_invalid_level_or_format_is_rejected() -> None:
    """Typos in level or format fail loudly instead of logging nothing."""
    with pytest.raises(ValueError, match="level"):
        configure_logging("LOUD", "json", io.StringIO())
    with pytest.raises(ValueError, match="format"):
        configure_logging("INFO", "xml", io.StringIO())


# --- redaction -----------------------------------------------------------------------------


def test_registered_key_and_patterns_are_masked_in_message_fields_and_nesting() -> None:
    """Secrets vanish from the message, flat fields, nested dict/list/tuple values and key names."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    get_logger("runtime.test").info(
        f"request with {KEY}",
        note=f"key={KEY}",
        openai="sk-proj-abcdefghijklmnop",
        header="Bearer eyJhbGciOi.payload.sig",
        nested={
            "headers": {"Authorization": "Bearer xyz", "api-key": "raw"},
            "list": [KEY, (KEY,)],
        },
        api_key="plain-but-named",
        password=1234,
        max_tokens=5,
        usage={"prompt_tokens": 3},
    )
    line = out.getvalue()
    assert KEY not in line
    assert "abcdefghijklmnop" not in line
    assert "eyJhbGciOi" not in line and "xyz" not in line and "raw" not in line
    assert "plain-but-named" not in line and "1234" not in line
    [record] = json_lines(out)
    assert record["event"] == "request with ***"
    assert record["note"] == "key=***"
    assert record["header"] == "Bearer ***"
    assert record["nested"]["headers"] == {"Authorization": "***", "api-key": "***"}
    assert record["nested"]["list"] == ["***", ["***"]]
    assert record["api_key"] == "***"
    assert record["max_tokens"] == 5  # token counts are not tokens
    assert record["usage"] == {"prompt_tokens": 3}


def test_exception_traceback_is_masked() -> None:
    """log.exception() formats the traceback first, then masks the key inside it."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    try:
        raise RuntimeError(f"auth failed for {KEY} / sk-live-abcdefghijk")
    except RuntimeError:
        get_logger("runtime.test").exception("api.failed")
    [record] = json_lines(out)
    assert "RuntimeError: auth failed for *** / ***" in record["exception"]
    assert "Traceback" in record["exception"]
    assert KEY not in out.getvalue()


def test_exception_object_as_field_is_masked() -> None:
    """An exception passed as a field value is rendered without the key."""
    out = io.StringIO()
    configure_logging("INFO", "console", out)
    get_logger("runtime.test").warning("api.error", error=ValueError(f"bad key {KEY}"))
    assert "api.error" in out.getvalue()
    assert KEY not in out.getvalue()
    assert "***" in out.getvalue()


def test_stdlib_logging_is_redacted_too() -> None:
    """aiohttp-style stdlib records (args and exc_info) pass through the same redaction."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    lib = logging.getLogger("aiohttp.client")
    lib.warning("sending headers %s", {"Authorization": f"Bearer {KEY}"})
    try:
        raise ConnectionError(f"reset while sending api-key: {KEY}")
    except ConnectionError:
        lib.exception("request failed %s", "?api-key=abcdef123456&x=1")
    assert KEY not in out.getvalue()
    assert "abcdef123456" not in out.getvalue()
    first, second = json_lines(out)
    assert first["logger"] == "aiohttp.client"
    assert first["level"] == "warning"
    assert "Bearer ***" in first["event"]
    assert second["event"] == "request failed ?api-key=***&x=1"
    assert "ConnectionError: reset while sending api-key: ***" in second["exception"]


def test_structlog_events_reach_other_handlers_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """Handlers we did not install (here pytest's) receive structlog events already masked."""
    configure_logging("INFO", "json", io.StringIO())
    get_logger("runtime.test").info("client.created", api_key=KEY, note=f"using {KEY}")
    [record] = [r for r in caplog.records if r.name == "runtime.test"]
    assert isinstance(record.msg, dict)
    assert record.msg["api_key"] == "***"
    assert record.msg["note"] == "using ***"


def test_console_output_is_redacted() -> None:
    """The human renderer gets the redacted event too, exceptions included."""
    out = TtyStream()
    configure_logging("DEBUG", "auto", out)
    try:
        raise OSError(KEY)
    except OSError:
        get_logger("runtime.test").exception("boom", token="t0ken-value-1")
    text = out.getvalue()
    assert "boom" in text and "OSError" in text
    assert KEY not in text and "t0ken-value-1" not in text


def test_redact_function_patterns() -> None:
    """redact() masks the key shapes and leaves ordinary text alone."""
    assert redact("use sk-abcdefgh1234 now") == "use *** now"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact('{"api_key": "xyz123", "password": "hunter2"}') == (
        '{"api_key": "***", "password": "***"}'
    )
    assert redact(f"k={KEY}!") == "k=***!"
    assert redact("client_secret=abc&x-api-key: zz") == "client_secret=***&x-api-key: ***"
    assert redact("redis://user:pa55w0rd@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("Bearer ***") == "Bearer ***"  # idempotent
    plain = "max_tokens=50 sk-short tokens: 12 prompt_tokens=3 task-abcdefghijkl api-version=v1"
    assert redact(plain) == plain


def test_short_secrets_are_not_registered() -> None:
    """Values under 8 characters are ignored (they would mask ordinary words)."""
    register_secret("abc")
    register_secret("")
    assert redact("abc abcdef") == "abc abcdef"


def test_redact_event_in_a_capture_pipeline() -> None:
    """redact_event works as a plain structlog processor (here before a LogCapture)."""
    capture = LogCapture()
    structlog.configure(processors=[redact_event, capture])
    structlog.get_logger().info("client.created", api_key=KEY, base="http://h/v1", extra=[KEY])
    assert capture.entries == [
        {
            "event": "client.created",
            "log_level": "info",
            "api_key": "***",
            "base": "http://h/v1",
            "extra": ["***"],
        }
    ]


def test_redacting_filter_for_foreign_handlers() -> None:
    """RedactingFilter masks message and traceback for a handler we did not install."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    lib = logging.getLogger("third.party")
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    lib.propagate = False
    try:
        try:
            raise KeyError(KEY)
        except KeyError:
            lib.exception("lookup %s", KEY)
    finally:
        lib.removeHandler(handler)
        lib.propagate = True
    text = out.getvalue()
    assert text.startswith("ERROR lookup ***")
    assert "KeyError" in text
    assert KEY not in text


# --- the direct route: our handler alone gets lines without the stdlib's records ------------


class _CountRecords:
    """Counts the LogRecords the standard library builds while installed."""

    def __init__(self) -> None:
        self.count = 0
        self._factory = logging.getLogRecordFactory()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        self.count += 1
        return self._factory(*args, **kwargs)

    def __enter__(self) -> _CountRecords:
        logging.setLogRecordFactory(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.setLogRecordFactory(self._factory)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Only our handler on the root logger (pytest's capture handlers, added once the test
    runs, set aside)."""
    root = logging.getLogger()
    others = [h for h in root.handlers if h not in our_handlers()]
    for handler in others:
        root.removeHandler(handler)
    yield
    for handler in others:
        root.addHandler(handler)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_structlog_events_reach_our_handler_alone_without_stdlib_records(fmt: str) -> None:
    """With our handler the only one, an event is written without any LogRecord being built,
    and the line is the one the standard route writes when another handler is present."""
    out = io.StringIO()
    configure_logging("INFO", fmt, out)
    log = get_logger("runtime.test")
    with alone(), _CountRecords() as records:
        log.info("test.direct", n=1, api_key=KEY)
    assert records.count == 0
    direct = out.getvalue()
    out.seek(0)
    out.truncate()
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    try:
        with _CountRecords() as records:
            log.info("test.direct", n=1, api_key=KEY)
        assert records.count >= 1
    finally:
        logging.getLogger().removeHandler(other)
    standard = out.getvalue()
    assert KEY not in direct and direct.count("\n") == 1
    if fmt == "json":
        first, second = json.loads(direct), json.loads(standard)
        assert first.pop("timestamp") and second.pop("timestamp")
        expected = {
            "event": "test.direct",
            "n": 1,
            "api_key": "***",
            "level": "info",
            "logger": "runtime.test",
        }
        assert first == second == expected
    else:
        assert direct.split(" ", 1)[1] == standard.split(" ", 1)[1]  # after the timestamp


def test_the_standard_route_is_kept_for_filters_levels_and_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A filtered logger, a handler level, logging.disable, exceptions and pytest's caplog
    all still see (or drop) events exactly as the standard library decides."""
    out = io.StringIO()
    configure_logging("DEBUG", "json", out)
    with alone():
        _log_through_the_standard_route(caplog)
    events = [line["event"] for line in json_lines(out)]
    assert events == ["test.exception", "test.captured"]
    assert "ValueError: boom" in json_lines(out)[0]["exception"]
    assert [r.msg["event"] for r in caplog.records if isinstance(r.msg, dict)] == ["test.captured"]


def _log_through_the_standard_route(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("runtime.test")
    named = logging.getLogger("runtime.test")
    named.addFilter(lambda record: False)
    try:
        log.info("test.filtered_out")
    finally:
        named.filters.clear()
    logging.disable(logging.INFO)
    try:
        log.info("test.disabled")
    finally:
        logging.disable(logging.NOTSET)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("test.exception")
    logging.getLogger().addHandler(caplog.handler)
    try:
        log.info("test.captured")
    finally:
        logging.getLogger().removeHandler(caplog.handler)


def test_a_secret_in_one_field_is_masked_and_the_other_fields_are_kept() -> None:
    """Strings are first checked together: one field with a secret (registered, a key
    pattern, a bearer token) is masked, its clean neighbours come out unchanged."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    log = get_logger("runtime.test")
    log.info("test.mixed", a="plain", b=f"key {KEY} here", c="Bearer abc.def", d="token=xyz1")
    log.info("test.clean", a="plain", b="ok")
    mixed, clean = json_lines(out)
    assert (mixed["a"], mixed["b"], mixed["c"], mixed["d"]) == (
        "plain",
        "key *** here",
        "Bearer ***",
        "token=***",
    )
    assert (clean["a"], clean["b"]) == ("plain", "ok")


class _BrokenStream(io.StringIO):
    """A stream whose writes fail, like a closed pipe."""

    def write(self, text: str) -> int:
        raise OSError("broken pipe")


def test_a_failing_stream_never_makes_a_log_call_raise(capsys: pytest.CaptureFixture[str]) -> None:
    """When our handler's stream fails, the event takes the standard route, whose handler
    reports the failure on stderr: the log call itself returns normally."""
    configure_logging("INFO", "json", _BrokenStream())
    with alone():
        get_logger("runtime.test").info("test.lost", n=1)
    assert "broken pipe" in capsys.readouterr().err


def test_a_chain_without_the_level_filter_still_sees_every_call() -> None:
    """The early level check applies only to chains that begin with filter_by_level:
    structlog's capture_logs (and an application's own chain) sees debug and info calls
    even with the standard library at WARNING."""
    reset_logging()  # the library's default: the root logger at WARNING
    log = get_logger("runtime.test")
    with capture_logs() as logs:
        log.debug("test.debug")
        log.info("test.info")
    assert [entry["event"] for entry in logs] == ["test.debug", "test.info"]


# --- the one-step route: configure_logging's loggers run its chain without structlog's loop -


class _Shown:
    """An object whose repr quotes the registered key."""

    def __repr__(self) -> str:
        return f"<Shown {KEY}>"


def _exception() -> ValueError:
    try:
        raise ValueError(f"boom with {KEY}")
    except ValueError as exc:
        return exc


# One case per way an event can need redaction (alone: a trigger in one field sends the
# whole event down the careful path).
ONE_STEP_EVENTS: dict[str, dict[str, Any]] = {
    "flat": {"n": 1, "s": "ok", "f": 0.125, "b": True, "z": None, "big": 10**20},
    "registered key": {"a": "plain", "b": f"key {KEY} here"},
    "bearer": {"c": "Bearer abc.def"},
    "key pattern": {"d": "token=xyz1"},
    "sk- key": {"e": "sk-abcdefghijkl"},
    "quotes": {"q": f'say "hi" {KEY}'},
    "non-ascii": {"u": f"naïve {KEY}"},
    "a character that lower-cases to ascii": {"k": "to\u212aen=abcdef"},
    "secret names": {"api_key": "named", "password": None},
    "a secret name without a trigger word": {"authorization": 5},
    "nested": {"headers": {"Authorization": "Bearer x"}, "items": [KEY, (1, "sk-abcdefghijkl")]},
    "lists of strings": {"tools": ["calc", "clock"], "ids": ("call_1", "call_2"), "none": []},
    "a secret in a list of strings": {"ids": ["call_1", KEY], "keys": ("sk-abcdefghijkl",)},
    "an escaped string in a list": {"ids": ['say "hi"', f"naïve {KEY}"]},
    "objects": {"shown": _Shown(), "nan": float("nan"), "when": datetime(2026, 1, 31)},
    "exception": {"exc_info": _exception()},
    "positional": {"n": 2},
}


@pytest.mark.parametrize("case", ONE_STEP_EVENTS)
def test_the_one_step_route_writes_what_the_chain_writes(case: str) -> None:
    """A debug/info/warning call on a logger of configure_logging's chain (run in one step)
    writes the line that structlog's own loop through the same chain writes, secrets masked
    the same way, whatever the event holds."""
    out = io.StringIO()
    configure_logging("DEBUG", "json", out)
    structlog.contextvars.bind_contextvars(request_id="req_1")
    fields = ONE_STEP_EVENTS[case]
    args = ("x",) if case == "positional" else ()
    event = "test.one %s" if args else "test.one"
    looped = structlog.wrap_logger(
        logging.getLogger("runtime.test"),
        processors=structlog.get_config()["processors"],
        wrapper_class=structlog.stdlib.BoundLogger,  # structlog's loop over the processors
        job="j1",
    )
    with alone():
        for method in ("debug", "info", "warning"):
            getattr(get_logger("runtime.test", job="j1"), method)(event, *args, **fields)
            getattr(looped, method)(event, *args, **fields)
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and KEY not in out.getvalue()
    records = [json.loads(line) for line in lines]
    for record in records:
        assert record.pop("timestamp").endswith("Z")
        assert record["request_id"] == "req_1" and record["job"] == "j1"
    assert records[0::2] == records[1::2]
    assert [r["level"] for r in records] == ["debug", "debug", "info", "info", "warning", "warning"]


def test_lists_of_strings_are_masked_item_by_item() -> None:
    """A list (or tuple, or set) of strings is checked as one text, and one secret among
    its items masks that item alone; a clean list comes out as it went in."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    with alone():
        get_logger("runtime.test").info(
            "test.lists",
            ids=["call_1", KEY, "call_3"],
            keys=("sk-abcdefghijkl", "plain"),
            tags={"token=abc123"},
            clean=["call_1", "call_2"],
        )
    [record] = json_lines(out)
    assert record["ids"] == ["call_1", "***", "call_3"]
    assert record["keys"] == ["***", "plain"]
    assert record["tags"] == ["token=***"]
    assert record["clean"] == ["call_1", "call_2"]


def test_secrets_in_escaped_strings_are_masked_on_the_one_step_route() -> None:
    """Strings JSON escapes (quotes, non-ASCII, control characters) are checked for secrets
    themselves, not as the line shows them: a registered key with a quote in it, a key
    pattern spelt with a character that lower-cases to ASCII, next to non-ASCII text, and a
    bearer token after a tab are all masked."""
    quoted = 'pa"ss-word-123456'
    register_secret(quoted)
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    log = get_logger("runtime.test")
    with alone():
        log.info("test.escaped", a=f"x {quoted} y")
        log.info("test.escaped", a="naïve api\u212aey=xyz1")  # a Kelvin sign: "apikey="
        log.info("test.escaped", a="\tBearer abc")
        log.info("test.escaped", a="é")
    assert [record["a"] for record in json_lines(out)] == [
        "x *** y",
        "naïve api\u212aey=***",
        "\tBearer ***",
        "é",
    ]
    assert "ss-word-123456" not in out.getvalue()


def test_a_processor_added_to_the_configured_chain_runs() -> None:
    """The one-step route serves only the chain configure_logging built: an application that
    inserts a processor into the configured list (structlog.get_config() returns it) sees it
    run, and its loggers' lines are still written and masked."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)

    def stamp_host(_logger: Any, _method: str, event_dict: Any) -> Any:
        event_dict["host"] = "h1"
        return event_dict

    structlog.get_config()["processors"].insert(1, stamp_host)
    with alone():
        get_logger("runtime.test").info("test.added", api_key=KEY)
    [record] = json_lines(out)
    assert record["host"] == "h1" and record["api_key"] == "***"


def test_json_lines_are_what_json_dumps_writes() -> None:
    """The JSON renderer's one C encoder writes json.dumps's text (defaults, repr of other
    objects): non-ASCII escaped, NaN as NaN, nested containers, key order kept."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    fields: dict[str, Any] = {
        "u": "naïve ☃",
        "nan": float("nan"),
        "nested": {"b": [1, 2.5, None, True], "a": {"x": "y"}},
        "obj": _Plain(),
    }
    with alone():
        get_logger("runtime.test").info("test.dumps", **fields)
    line = out.getvalue().rstrip("\n")
    record = json.loads(line)
    expected = {**fields, "obj": repr(fields["obj"]), "event": "test.dumps"}
    expected |= {"level": "info", "logger": "runtime.test", "timestamp": record["timestamp"]}
    assert line == json.dumps(expected)


class _Plain:
    """An object json cannot encode and whose repr holds no secret."""

    def __repr__(self) -> str:
        return "<Plain>"


# --- the dispatcher's lines under the worker's logging ---------------------------------------

tool_registry = ToolRegistry()


@tool_registry.tool
async def fine() -> str:
    """Succeed."""
    return "ok"


@tool_registry.tool
async def leaky() -> str:
    """Fail with an API key in the message."""
    raise RuntimeError("upstream refused sk-live-abcdefghijklmnop")


async def test_the_workers_json_lines_for_a_batch_of_tool_calls() -> None:
    """Under the worker's INFO JSON logging a batch writes one tool.finished line per call
    with its tool name, call id, run id, outcome and duration; a failure's line is a warning
    with the error type and the traceback, its API key masked. The start lines
    (tool.batch_started, tool.started) are DEBUG."""
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    with alone():
        results = await ToolDispatcher(tool_registry, run_id="run_7").run_batch(
            [ToolCall("c1", "fine", "{}"), ToolCall("c2", "leaky", "{}")]
        )
    assert [r.error_type for r in results] == [None, "tool_exception"]
    lines = json_lines(out)
    assert [e["event"] for e in lines] == ["tool.finished", "tool.finished"]
    done = {e["tool_call_id"]: e for e in lines}
    assert (done["c1"]["tool"], done["c1"]["run_id"], done["c1"]["level"]) == (
        "fine",
        "run_7",
        "info",
    )
    assert (done["c1"]["outcome"], done["c1"]["error_type"]) == ("ok", None)
    assert isinstance(done["c1"]["seconds"], float) and done["c1"]["timestamp"].endswith("Z")
    failed = done["c2"]
    assert (failed["tool"], failed["level"], failed["outcome"]) == ("leaky", "warning", "error")
    assert failed["error_type"] == "tool_exception"
    assert "RuntimeError: upstream refused ***" in failed["exception"]
    assert "abcdefghijklmnop" not in out.getvalue()


async def test_tool_started_lines_at_debug() -> None:
    """At DEBUG a batch also writes its tool.batch_started line (its calls' names and ids, in
    one line of lists) and each call its tool.started line (tool name, call id, run id),
    before its own tool.finished."""
    out = io.StringIO()
    configure_logging("DEBUG", "json", out)
    with alone():
        await ToolDispatcher(tool_registry, run_id="run_8").run_batch(
            [ToolCall("c1", "fine", "{}")]
        )
    lines = json_lines(out)
    batch = lines[0]
    assert (batch["calls"], batch["tools"], batch["tool_call_ids"]) == (1, ["fine"], ["c1"])
    assert (batch["run_id"], batch["logger"]) == ("run_8", "tools")
    assert [(e["event"], e["level"]) for e in lines] == [
        ("tool.batch_started", "debug"),
        ("tool.started", "debug"),
        ("tool.finished", "info"),
    ]
    assert (lines[1]["tool"], lines[1]["tool_call_id"], lines[1]["run_id"]) == (
        "fine",
        "c1",
        "run_8",
    )


# --- module loggers ---------------------------------------------------------------------------


def test_a_module_logger_follows_every_reconfiguration() -> None:
    """A ModuleLogger made before any configuration writes to the stream of the current
    configure_logging call, at its level, and is silent again after reset_logging."""
    log = ModuleLogger("runtime.test")
    first, second = io.StringIO(), io.StringIO()
    with alone():
        configure_logging("INFO", "json", first)
        log.info("test.first", n=1)
        log.debug("test.hidden")
        configure_logging("DEBUG", "json", second)
        log.debug("test.second", n=2)
        reset_logging()
        log.warning("test.silent")
    assert [(e["event"], e["n"]) for e in json_lines(first)] == [("test.first", 1)]
    assert [(e["event"], e["level"]) for e in json_lines(second)] == [("test.second", "debug")]


def test_a_module_logger_is_captured_by_capture_logs() -> None:
    """capture_logs (which swaps the configured chain's contents in place) sees a module
    logger's every call, DEBUG included under an INFO configuration, and its lines go to the
    stream again afterwards."""
    log = ModuleLogger("runtime.test")
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    with alone():
        log.info("test.before")
        with capture_logs() as captured:
            log.debug("test.captured_debug", n=1)
            log.info("test.captured_info")
        log.info("test.after")
    assert [(e["event"], e["log_level"]) for e in captured] == [
        ("test.captured_debug", "debug"),
        ("test.captured_info", "info"),
    ]
    assert [e["event"] for e in json_lines(out)] == ["test.before", "test.after"]


def test_a_module_logger_is_assembled_once_per_configuration() -> None:
    """The bound logger is made once and kept while the configuration stays; a processor
    added to the configured chain in place makes a new one, which runs that processor."""
    log = ModuleLogger("runtime.test")
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    seen: list[str] = []

    def note(_logger: Any, _method: str, event_dict: Any) -> Any:
        seen.append(event_dict["event"])
        return event_dict

    with alone():
        log.info("test.one")
        kept = log._bound()
        assert log._bound() is kept
        structlog.get_config()["processors"].insert(1, note)
        log.info("test.two")
    assert log._bound() is not kept
    assert seen == ["test.two"]
    assert [e["event"] for e in json_lines(out)] == ["test.one", "test.two"]
