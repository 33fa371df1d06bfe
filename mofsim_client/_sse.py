"""Server-sent events: an incremental parser (the WHATWG rules: ``event:``, ``id:``,
``data:`` over one or more lines, ``retry:``, ``:`` comments, a blank line ends an
event), shared by the sync and async clients, which feed it lines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        """The data as JSON, or the text itself when it is not JSON."""
        try:
            return json.loads(self.data)
        except ValueError:
            return self.data


class SSEParser:
    """Feed it lines (without their line ending); it returns an event when one is
    complete.  ``last_event_id`` survives across events, as the standard says, so a
    reconnect can send it as ``Last-Event-ID``."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self.comments = 0
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1  # heartbeat: proves the connection is alive
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value or None
        elif name == "retry":
            if value.isdigit():
                self.retry_ms = int(value)
        # Other field names are ignored, as the standard requires.
        return None

    def _dispatch(self) -> SSEEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SSEEvent(event=event, data="\n".join(data), id=self.last_event_id)


class Resume:
    """Reconnection state of one followed stream: the last event id seen, and how many
    times in a row the stream dropped without delivering anything."""

    def __init__(
        self, last_event_id: str | None, retries: int, backoff: float, backoff_max: float
    ) -> None:
        self.last_event_id = last_event_id
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.drops = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def parser(self) -> SSEParser:
        return SSEParser(self.last_event_id)

    def seen(self, event: SSEEvent) -> None:
        if event.id is not None:
            self.last_event_id = event.id
        self.drops = 0

    def dropped(self) -> float | None:
        """The pause before reconnecting; None once it dropped too often in a row."""
        if self.drops > self.retries:
            return None
        delay = min(self.backoff_max, self.backoff * 2.0**self.drops)
        self.drops += 1
        return delay
