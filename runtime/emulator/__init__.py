"""Local, protocol-faithful emulator of the Assistants, Responses and Conversations APIs, with a
scripted model, fault injection and bounded (LRU) retention of what it stores.

Tests, examples and the demo run against it over real HTTP; the official ``openai`` SDK works
against it unchanged (``OpenAI(base_url=emu.base_url, api_key="sk-anything")``, or
``AzureOpenAI(azure_endpoint=emu.azure_endpoint, api_version=..., api_key=...)``)::

    async with Emulator(scenario=None, faults=None, seed=0, run_ttl_s=600.0) as emu:
        emu.base_url          # "http://127.0.0.1:PORT/v1" (OpenAI style)
        emu.azure_endpoint    # "http://127.0.0.1:PORT" ({endpoint}/openai/...?api-version=V)
        emu.requests          # request log: time, method, path, status, fault, request_id, json
        emu.stats             # requests, streams, runs_created, runs_<status>, faults{kind: n}, ...
        emu.faults = "429=0.05,503=0.05,reset=0.02,seed=7"        # random faults, live
        emu.inject("503", method="POST", path=r"/runs$", times=1)  # the next N matches
        emu.runs(thread_id); emu.get_run(run_id); emu.messages(thread_id); emu.steps(run_id)
        emu.set_scenario("config/scenarios/weather.toml")

From the command line: ``python -m runtime emulator --port 8321`` (``--scenario``,
``--faults``, ``--seed``, ``--api-key``, ``--delta-delay-ms``, ``--max-retained``, ...). It
listens on loopback only unless ``allow_remote=True`` (``--allow-remote``).

Endpoints (under ``/v1`` and Azure-style ``/openai``): assistants, threads, messages, runs
(create, list, retrieve, update, cancel, submit_tool_outputs, create thread and run), run
steps; ``/responses`` (streamed or not, ``previous_response_id`` or ``conversation``,
background responses with resumable streams, cancel, ``input_items``) and
``/conversations[/{id}[/items[/{item_id}]]]``. Unknown body parameters answer
``400 unknown_parameter``. Streams follow the recorded event order, end with
``event: done`` / ``data: [DONE]`` (Assistants) and carry every field of the recorded objects.

Rules of the real service it enforces:

* one active run per thread (400 ``Thread thread_x already has an active run run_y.``);
* submit_tool_outputs must answer exactly the required ``tool_call_id`` values, only in
  ``requires_action``; a Responses follow-up must answer every function call;
* an unanswered ``requires_action`` run becomes ``expired`` at ``expires_at``;
* cancel answers ``cancelling``, and ``cancel_delay_s`` later the run is ``cancelled``;
* metadata: at most 16 keys, keys <= 64 and values <= 512 characters;
* errors are ``{"error": {"message", "type", "param", "code"}}``; keys are never echoed;
  every response has ``x-request-id``; run retrieval has ``openai-poll-after-ms``.

The scripted model (:class:`ScriptedModel`): lines ``/call NAME {json}`` in the last user
message become tool calls of one step (one per step with ``parallel_tool_calls=false``); a
forced ``tool_choice`` calls that function with arguments built from its schema; once the
calls have outputs the reply quotes each, ``NAME returned: <output>``; otherwise
``You said: <message>`` (``{"reply": ...}`` in JSON mode, a schema-shaped object for
structured output). Scenario files (:class:`Scenario`, ``config/scenarios/*.toml``) script
``text``, ``tool_calls``, ``fail`` and ``incomplete`` turns.

Faults (:class:`FaultSpec`): ``429``, ``503`` (with ``retry-after`` / ``retry-after-ms``),
``500``, ``reset`` (before the request is processed), ``reset_after`` and ``500_after`` (the
request is processed, then the answer is lost: the ambiguous failure), ``cut`` (a stream
closed after N events), ``stall`` (a stream that goes silent), ``slow`` (first byte
delayed). Spec grammar (``--faults``, ``FaultSpec.parse``, ``POST /_emulator/faults``)::

    spec  := item ("," item)*
    item  := KIND "=" PROBABILITY        KIND  := 429|500|503|reset|reset_after|500_after|cut|stall|slow
           | PARAM "=" VALUE             PARAM := seed | retry_after | retry_after_ms | cut_after
                                                  | stall_after | slow_ms | paths (regex)
    example: 429=0.05,503=0.05,reset=0.02,cut=0.02,slow=0.02,seed=7,retry_after_ms=200

Faults only hit API requests, never ``/_emulator``. Control endpoints for a client in another
process: ``GET /_emulator/stats``, ``GET /_emulator/requests[?limit=N]``,
``POST /_emulator/faults`` ``{"spec": ...}``, ``POST /_emulator/inject`` ``{"kind": ...}``.
"""

from runtime.emulator.faults import Fault, FaultSpec, FaultSpecError
from runtime.emulator.model import ModelInput, ScriptedModel, Turn
from runtime.emulator.scenario import Scenario, ScenarioError
from runtime.emulator.server import Emulator, EmulatorError

__all__ = [
    "Emulator",
    "EmulatorError",
    "Fault",
    "FaultSpec",
    "FaultSpecError",
    "ModelInput",
    "Scenario",
    "ScenarioError",
    "ScriptedModel",
    "Turn",
]
