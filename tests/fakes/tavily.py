"""A fake Tavily search API on loopback, for the real `AsyncTavilyClient`.

``POST /search`` takes what tavily-python sends (a JSON body with ``query`` and the options
it was given, ``Authorization: Bearer <key>``) and answers in Tavily's shape: ``query``,
``answer`` (when ``include_answer`` asked for one), ``results`` (``title``, ``url``,
``content``, ``score``, ``raw_content``), ``images``, ``follow_up_questions``,
``response_time``, ``request_id``. A wrong key gets Tavily's 401 body. ``delay_s`` holds
answers back (a slow search), ``fail_status`` makes every search fail::

    with FakeTavily("tvly-test", answer="42", results=[...]) as tavily:
        ...  # TAVILY_API_BASE_URL=tavily.url

It runs in its own thread, so a 2-second search costs the test's event loop nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes._http import ThreadedHttpFake, read_body, send_json


@dataclass(frozen=True)
class SearchRequest:
    """One request: ``time`` is ``time.monotonic()`` at arrival, ``body`` the parsed JSON."""

    time: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def result(title: str, url: str, content: str, score: float = 0.8) -> dict[str, Any]:
    """One search result as Tavily returns it."""
    return {"title": title, "url": url, "content": content, "score": score, "raw_content": None}


@dataclass
class FakeTavily(ThreadedHttpFake):
    api_key: str
    answer: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 0.0
    fail_status: int | None = None
    requests: list[SearchRequest] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each answer sent (after ``delay_s``)."""

    _thread_name = "fake-tavily"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        raw = read_body(handler)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        self.requests.append(
            SearchRequest(arrived, handler.path, dict(handler.headers.items()), body)
        )
        status, payload = self._answer(handler, body, arrived)
        if self.delay_s:
            self._released.wait(self.delay_s)
        try:
            send_json(handler, status, payload)
        except OSError:
            return  # the client gave up (timed out, call ended)
        self.answered.append(time.monotonic())

    def _answer(
        self, handler: BaseHTTPRequestHandler, body: dict[str, Any], arrived: float
    ) -> tuple[int, dict[str, Any]]:
        if handler.path != "/search":
            return 404, {"detail": "Not Found"}
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"detail": {"error": "Unauthorized: missing or invalid API key."}}
        if self.fail_status is not None:
            return self.fail_status, {"detail": {"error": "Internal server error"}}
        query = body.get("query")
        if not isinstance(query, str) or not query:
            return 400, {"detail": {"error": "Query is missing."}}
        max_results = int(body.get("max_results") or 5)
        answer = self.answer if body.get("include_answer") else None
        return 200, {
            "query": query,
            "follow_up_questions": None,
            "answer": answer,
            "images": [],
            "results": self.results[:max_results],
            "response_time": f"{time.monotonic() - arrived + self.delay_s:.2f}",
            "request_id": str(uuid.uuid4()),
        }


__all__ = ["FakeTavily", "SearchRequest", "result"]
