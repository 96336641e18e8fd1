"""The wire layer both protocols share: SSE framing, the stream base, shared events and
objects, snapshots. No policy and no protocol here."""

from runtime.protocol.events import StreamEvent
from runtime.protocol.sse import SSEDecoder, SSERecord

__all__ = ["SSEDecoder", "SSERecord", "StreamEvent"]
