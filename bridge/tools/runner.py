"""Runs a call's tools beside the audio: the pumps hand work over and never wait for it.

The adapter (`stream.py`) creates one `ToolRunner` per call and forwards three things to it:
function calls from the model, DTMF digits from the caller, and the moment the agent's audio
has finished playing (so call-control actions can let the last words play out).

Every function call runs as its own task, bounded by its tool's timeout; a slow tool gets its
filler line spoken (once, and only while the model is silent), and a timeout or an exception
becomes an error result the model can talk about. Results go back through
`Call.tool_result`, which answers all calls of a response together and asks for one response.

Call control is a small state machine, one `Handoff` per call at most:
`waiting` (for the model to be silent) → say the line → `speaking` (until the caller has
heard it: `Call.idle`) → `acting` (Twilio REST) → the call ends. A handoff the model chose is
called off if the caller talks over its line; a watchdog acts anyway if the line never
finishes (a stuck upstream must not keep a caller from the person they asked for).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.call import Call
from bridge.logs import get_logger
from bridge.realtime.events import FunctionCall
from bridge.tools import dtmf as keypad
from bridge.tools.base import Handoff, Tool, ToolEnv, ToolResult, speak_exactly
from bridge.tools.call_control import TwilioCallControl, dial_twiml
from bridge.tools.catalogue import build_tools

log = get_logger("voicebridge.tools")

FILLER_AFTER_S = 1.0
"""A tool still running after this long gets its filler line spoken."""
HANDOFF_MAX_WAIT_S = 20.0
"""A handoff whose line has not played out after this long is carried out anyway."""


@dataclass(slots=True)
class _Pending:
    handoff: Handoff
    stage: Literal["waiting", "speaking", "acting"] = "waiting"
    items_before: frozenset[str] = frozenset()
    started: float = field(default_factory=time.monotonic)


class ToolRunner:
    """One call's tool tasks. `flush` sends what the `Call` queued upstream; `end` ends the
    call with a reason (the adapter closes both sockets). `context` is the adapter's
    `ToolContext` (or a `ToolEnv`); without one no tool is offered. `tools` overrides the
    persona's tools (tests)."""

    def __init__(
        self,
        call: Call,
        *,
        flush: Callable[[], Awaitable[None]],
        end: Callable[[str], None],
        context: Any = None,
        tools: Mapping[str, Tool] | None = None,
        filler_after_s: float = FILLER_AFTER_S,
        handoff_max_wait_s: float = HANDOFF_MAX_WAIT_S,
    ) -> None:
        self.call = call
        self._flush = flush
        self._end = end
        self.context = context
        self.env = _env_of(context)
        if tools is not None:
            self.tools: dict[str, Tool] = dict(tools)
        elif self.env is not None:
            self.tools = build_tools(self.env.persona, self.env.settings)
        else:
            self.tools = {}
        self.control = (
            TwilioCallControl.from_settings(self.env.settings) if self.env is not None else None
        )
        self.filler_after_s = filler_after_s
        self.handoff_max_wait_s = handoff_max_wait_s
        self.tasks: set[asyncio.Task[Any]] = set()
        self.end_reason: str | None = None
        """Set once Twilio has been asked to transfer or hang up: from then on that is why the
        call ends, even if Twilio's `stop` reaches the stream before its REST answer does."""
        self._handoff: _Pending | None = None
        self._acting: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._deferred_line: str | None = None
        self._closed = False

    # --- function calls -------------------------------------------------------------------

    def start(self, function_call: FunctionCall) -> None:
        """Run a function call as a task; its result goes back through `Call.tool_result`."""
        if self._closed:
            return
        self._spawn(self._run(function_call), f"tool:{function_call.name}")

    async def _run(self, function_call: FunctionCall) -> None:
        started = time.perf_counter()
        args, problem = _parse_arguments(function_call.arguments)
        tool = self.tools.get(function_call.name)
        try:
            if tool is None:
                result = ToolResult.failure(f"unknown tool {function_call.name!r}")
            elif args is None:
                result = ToolResult.failure(problem or "arguments are not a JSON object")
            else:
                result = await self._invoke(tool, args)
        except asyncio.CancelledError:
            # The call ended first: the result would have nowhere to go.
            _log_tool_call(function_call, args, started, False, "the call ended first", "info")
            raise
        if result.handoff is not None and self._handoff is not None:
            result = ToolResult.failure("the call is already being ended", respond=False)
        _log_tool_call(function_call, args, started, result.ok, result.error)
        if self._closed or self.call.ended:
            return
        self.call.tool_result(
            function_call.response_id,
            function_call.call_id,
            result.output,
            time.monotonic(),
            respond=result.respond,
        )
        if result.handoff is not None:
            self._begin_handoff(result.handoff)
        await self._send()

    async def _invoke(self, tool: Tool, args: dict[str, Any]) -> ToolResult:
        inner = asyncio.ensure_future(self._bounded(tool, args))
        try:
            if tool.filler and self.filler_after_s < tool.timeout_s:
                done, _ = await asyncio.wait({inner}, timeout=self.filler_after_s)
                if not done:
                    self._say_filler(tool)
            return await inner
        except TimeoutError:
            return ToolResult.failure(f"{tool.name} timed out after {tool.timeout_s:g} s")
        except Exception as exc:
            return ToolResult.failure(f"{tool.name} failed: {_describe(exc)}")
        finally:
            if not inner.done():
                inner.cancel()
                await asyncio.gather(inner, return_exceptions=True)

    async def _bounded(self, tool: Tool, args: dict[str, Any]) -> ToolResult:
        if self.env is None:
            raise RuntimeError("no call context")
        async with asyncio.timeout(tool.timeout_s):
            return await tool.run(args, self.env)

    def _say_filler(self, tool: Tool) -> None:
        if self.env is None or not tool.filler or self._handoff is not None:
            return
        # `say` refuses while a response is under way: the model is talking already.
        if self.call.say(speak_exactly(self.env.render(tool.filler))):
            log.info("tool_filler", name=tool.name)
            self._spawn(self._send(), "tool:send")

    # --- keypad ---------------------------------------------------------------------------

    def dtmf(self, digit: str) -> None:
        """A keypad digit from the caller: the persona's menu action, or a note to the model."""
        if self._closed or self.env is None:
            log.info("dtmf", digit=digit, action="ignore")
            return
        if self._handoff is not None:
            log.info("dtmf", digit=digit, action="ignore", reason="the call is ending")
            return
        outcome = keypad.decide(
            self.env.persona, digit, self.env, can_transfer=self.control is not None
        )
        if outcome is None:
            log.info("dtmf", digit=digit, action="ignore")
        elif isinstance(outcome, keypad.ToModel):
            log.info("dtmf", digit=digit, action="to_model")
            self.call.send_user_text(outcome.text)
            self._spawn(self._send(), "tool:send")
        elif isinstance(outcome, keypad.SayLine):
            log.info("dtmf", digit=digit, action="say")
            self._say_when_silent(outcome.text)
        else:
            log.info("dtmf", digit=digit, action=outcome.kind, target=outcome.target)
            self._begin_handoff(outcome)

    def _say_when_silent(self, text: str) -> None:
        if self.call.say(speak_exactly(text)):
            self._deferred_line = None
            self._spawn(self._send(), "tool:send")
        else:
            self._deferred_line = text  # said at the next PlaybackIdle; a newer press wins

    # --- playback ---------------------------------------------------------------------------

    def playback_idle(self) -> None:
        """Everything the agent said has played out and no response is under way."""
        if self._closed:
            return
        if self._handoff is not None:
            self._advance()
        elif self._deferred_line is not None:
            self._say_when_silent(self._deferred_line)

    # --- call control -----------------------------------------------------------------------

    def end_with(self, line: str, reason: str) -> None:
        """End the call for a limit (length, idleness): say `line`, let it play out, hang up.

        Unlike a hang-up the model chose, the caller talking over the line does not call it
        off. Ignored if another handoff is already under way.
        """
        self._begin_handoff(Handoff(kind="hangup", line=line, reason=reason, origin="limit"))

    def _begin_handoff(self, handoff: Handoff) -> None:
        if self._closed or self._handoff is not None:
            return
        self._handoff = _Pending(handoff)
        self._deferred_line = None
        log.info("handoff_started", kind=handoff.kind, target=handoff.target, origin=handoff.origin)
        self._watchdog = self._spawn(self._handoff_watchdog(), "tool:handoff-watchdog")
        self._advance()

    def _advance(self) -> None:
        pending = self._handoff
        if pending is None or pending.stage == "acting":
            return
        if pending.stage == "waiting":
            items = frozenset(self.call.items)
            if self.call.say(speak_exactly(pending.handoff.line)):
                pending.stage = "speaking"
                pending.items_before = items
                self._spawn(self._send(), "tool:send")
            return
        # Speaking: act only once the caller has heard the line to the end.
        if not self.call.idle:
            return
        if pending.handoff.origin == "model" and self._line_interrupted(pending):
            log.info("handoff_cancelled", kind=pending.handoff.kind, reason="caller spoke")
            self._handoff = None
            self._cancel_watchdog()
            return
        self._act(pending)

    def _line_interrupted(self, pending: _Pending) -> bool:
        return any(
            item.interrupted
            for item_id, item in self.call.items.items()
            if item_id not in pending.items_before
        )

    def _act(self, pending: _Pending) -> None:
        pending.stage = "acting"
        self._cancel_watchdog()
        self._acting = self._spawn(self._carry_out(pending.handoff), "tool:handoff")

    def _cancel_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()

    async def _handoff_watchdog(self) -> None:
        await asyncio.sleep(self.handoff_max_wait_s)
        pending = self._handoff
        if pending is not None and pending.stage != "acting" and not self._closed:
            log.warning(
                "handoff_forced",
                kind=pending.handoff.kind,
                stage=pending.stage,
                waited_s=round(time.monotonic() - pending.started, 1),
            )
            self._act(pending)

    async def _carry_out(self, handoff: Handoff) -> None:
        call_sid = self.env.call_sid if self.env is not None else self.call.call_sid
        if self.control is None:
            # Local mode: no Twilio account to ask. Closing the stream ends the call.
            log.info("call_control", action=handoff.kind, ok=True, via="stream_close")
            self.end_reason = handoff.reason
            self._end(handoff.reason)
            return
        self.end_reason = handoff.reason
        if handoff.kind == "transfer":
            assert handoff.number is not None
            outcome = await self.control.redirect(call_sid, dial_twiml(handoff.number))
        else:
            outcome = await self.control.complete(call_sid)
        fields: dict[str, Any] = {
            "action": handoff.kind,
            "ok": outcome.ok,
            "http_status": outcome.http_status,
            "duration_ms": outcome.duration_ms,
        }
        if handoff.target:
            fields["target"] = handoff.target
        if outcome.code is not None:
            fields["code"] = outcome.code
        if outcome.error:
            fields["error"] = outcome.error
        (log.info if outcome.ok else log.warning)("call_control", **fields)
        if outcome.ok or handoff.kind == "hangup":
            # A failed hang-up still ends the stream: Twilio then plays the fallback TwiML.
            if not self._closed:
                self._end(handoff.reason)
            return
        # The transfer did not happen and the caller is still on the line.
        self.end_reason = None
        self._handoff = None
        if not self._closed and self.call.say(
            f"The transfer to {handoff.target} did not go through. Apologise briefly to the "
            "caller and offer to help another way."
        ):
            await self._send()

    # --- plumbing ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("tool_task_failed", task=task.get_name(), error=_describe(task.exception()))

    async def _send(self) -> None:
        if self._closed:
            return
        try:
            await self._flush()
        except Exception as exc:  # the upstream closed; its pump ends the call
            log.debug("tool_send_failed", error=_describe(exc))

    async def aclose(self) -> None:
        """The call is over: cancel what still runs; late results are dropped. A Twilio
        request already sent is let finish (bounded by its timeout), so its outcome is
        logged and `end_reason` stays true."""
        self._closed = True
        self._cancel_watchdog()
        acting = self._acting
        if acting is not None and not acting.done():
            limit = (self.control.timeout_s if self.control is not None else 0.0) + 1.0
            await asyncio.wait({acting}, timeout=limit)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        for tool in self.tools.values():
            if tool.close is not None:
                try:
                    await tool.close()
                except Exception as exc:
                    log.warning("tool_close_failed", name=tool.name, error=_describe(exc))


def _env_of(context: Any) -> ToolEnv | None:
    if context is None or isinstance(context, ToolEnv):
        return context
    return ToolEnv(
        persona=context.persona,
        settings=context.bridge.settings,
        call_sid=context.call_sid,
        caller_number=getattr(context, "caller_number", "") or "",
    )


def _parse_arguments(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The model's arguments as a dict; empty text means none (some models send "")."""
    if not text or not text.strip():
        return {}, None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, "arguments must be a JSON object"
    return value, None


def _log_tool_call(
    function_call: FunctionCall,
    args: dict[str, Any] | None,
    started: float,
    ok: bool,
    error: str | None,
    level: str | None = None,
) -> None:
    fields: dict[str, Any] = {
        "name": function_call.name,
        "arguments": args if args is not None else function_call.arguments,
        "ok": ok,
        "duration_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }
    if error:
        fields["error"] = error
    getattr(log, level or ("info" if ok else "warning"))("tool_call", **fields)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
