"""Wire layer: SSE framing, API object models and typed stream events. No policy here."""

from runtime.protocol.events import StreamEvent, parse_event
from runtime.protocol.sse import SSEDecoder, SSERecord

__all__ = ["SSEDecoder", "SSERecord", "StreamEvent", "parse_event"]
