"""Snapshots of what a stream has built so far: message text and tool-call arguments.

Both grow by appending fragments to lists and join them only when read, so a message of N
deltas costs O(N), not the O(N^2) of rebuilding the whole text per delta. The same classes
serve both protocols, so one handler reads the same shapes from either.
"""

from __future__ import annotations


class TextSnapshot:
    """An assistant message as streamed so far: text fragments per content part.

    Attributes:
        id: the message (Assistants) or output item (Responses) id.
        turn_id: the run or response that writes it.
        status: last known status.
        index: its position in the turn's output (Responses ``output_index``; else its order).
    """

    __slots__ = ("_joined", "_parts", "id", "index", "status", "turn_id")

    def __init__(self, message_id: str, turn_id: str | None = None, index: int = 0) -> None:
        self.id = message_id
        self.turn_id = turn_id
        self.index = index
        self.status: str | None = None
        self._parts: dict[int, list[str]] = {}
        self._joined: str | None = None

    def append(self, index: int, value: str) -> None:
        """Append a text fragment to content part ``index``."""
        parts = self._parts.get(index)
        if parts is None:
            parts = self._parts[index] = []
        parts.append(value)
        self._joined = None

    def part_text(self, index: int) -> str:
        """The text of content part ``index`` so far."""
        return "".join(self._parts.get(index, ()))

    def replace_part(self, index: int, text: str) -> None:
        """Replace one content part's text (when a later statement disagrees)."""
        self._parts[index] = [text]
        self._joined = None

    def replace_text(self, text: str) -> None:
        """Replace the whole text (when the final object disagrees with the deltas)."""
        self._parts = {0: [text]}
        self._joined = text

    @property
    def text(self) -> str:
        """All text of the message so far (joined once per change, then cached)."""
        if self._joined is None:
            for parts in self._parts.values():
                if len(parts) > 1:
                    # Collapse, so reading after every delta does not re-join all fragments.
                    parts[:] = ["".join(parts)]
            self._joined = "".join(self._parts[i][0] for i in sorted(self._parts))
        return self._joined

    def __repr__(self) -> str:
        return f"TextSnapshot(id={self.id!r}, status={self.status!r}, chars={len(self.text)})"


class ToolCallSnapshot:
    """A tool call as streamed so far: arguments assembled from fragments.

    Attributes:
        id: the ``tool_call_id`` / ``call_id`` its output answers.
        name: the function name.
        type: ``function`` (or another tool type on Assistants).
        index: its position (in the run step, or in the response output).
        group: the run step (Assistants) or response (Responses) id it belongs to.
        item_id: the output item's own id (Responses).
        done: the model finished writing it.
    """

    __slots__ = ("_args", "done", "group", "id", "index", "item_id", "name", "type")

    def __init__(self, group: str, index: int) -> None:
        self.group = group
        self.index = index
        self.id = ""
        self.item_id = ""
        self.type = "function"
        self.name = ""
        self.done = False
        self._args: list[str] = []

    def append_arguments(self, fragment: str) -> None:
        """Append a fragment of the JSON arguments."""
        self._args.append(fragment)

    def replace_arguments(self, arguments: str) -> None:
        """Replace the assembled arguments (when the final statement disagrees)."""
        self._args[:] = [arguments]

    @property
    def arguments(self) -> str:
        """The arguments text so far."""
        if len(self._args) > 1:
            self._args[:] = ["".join(self._args)]
        return self._args[0] if self._args else ""

    def __repr__(self) -> str:
        return f"ToolCallSnapshot(id={self.id!r}, name={self.name!r}, done={self.done})"
