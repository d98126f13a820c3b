"""An outbound call answered offline: `voicebridge dial` against a bridge without Twilio.

In local mode `POST /calls` has nobody to ring, so it places the call in the bridge only
(`"simulated": true`) and the command plays what Twilio and the callee would: it requests the
call's `/outbound-answer` (the callee picked up), opens the stream, reports who answered at
`/amd-status` a moment later (`human`, or `machine_end_beep` once a machine's greeting and beep
would be over), listens to the agent as `voicebridge call` does, and reports the call's end at
`/call-status`. A person hangs up after the agent's greeting; a machine waits for the bridge
to hang up after its voicemail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from bridge.sim.cli import CallReport, Printer, run_plan
from bridge.sim.ids import DEFAULT_ACCOUNT_SID
from bridge.sim.inputs import plan_call
from bridge.sim.webhook import WEBHOOK_TIMEOUT_SECONDS, parse_connect_twiml, webhook_params

__all__ = ["ANSWERED_BY_FOR", "DETECTION_DELAY_S", "Answer", "ring_simulated"]

Answer = Literal["human", "machine"]

ANSWERED_BY_FOR: Final[dict[str, str]] = {"human": "human", "machine": "machine_end_beep"}
"""What Twilio's detection reports for each kind of answer."""

DETECTION_DELAY_S: Final = 1.0
"""From the answer to the detection result: Twilio takes a few seconds (after a machine's
beep, longer); one keeps the offline call short."""


def _on(base_url: str, path_and_query: str) -> str:
    base, other = urlsplit(base_url), urlsplit(path_and_query)
    return urlunsplit((base.scheme, base.netloc, other.path, other.query, ""))


async def ring_simulated(
    url: str,
    placed: Mapping[str, Any],
    callee: str,
    answer: Answer,
    record: str | None,
    out: Printer,
) -> CallReport:
    """Answer the call `POST /calls` placed (its answer is `placed`) as `answer`; returns
    the report. Raises what `voicebridge call` raises (`CallRejected`, httpx errors)."""
    plan = plan_call(url, record=record)
    call_sid = str(placed["call_sid"])
    form = webhook_params(
        call_sid=call_sid,
        account_sid=DEFAULT_ACCOUNT_SID,
        from_number=str(placed["from"]),
        to_number=callee,
    )
    form["Direction"] = "outbound-api"
    answer_url = _on(plan.url, str(placed["answer_url"]))
    out(f"ringing {callee} (CallSid {call_sid}): answered by a {answer}")
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
        response = await client.post(answer_url, data=form)
        target = parse_connect_twiml(
            response.status_code,
            response.headers.get("content-type", ""),
            response.text,
            call_sid=call_sid,
            account_sid=DEFAULT_ACCOUNT_SID,
            form=form,
        )
        started = time.monotonic()

        async def detected() -> None:
            await asyncio.sleep(DETECTION_DELAY_S)
            result = {"CallSid": call_sid, "AnsweredBy": ANSWERED_BY_FOR[answer]}
            delay_ms = str(round(DETECTION_DELAY_S * 1000))
            reported = await client.post(
                _on(plan.url, "/amd-status"),
                data={**result, "MachineDetectionDuration": delay_ms},
            )
            reported.raise_for_status()
            out(f"[detection] answered by {ANSWERED_BY_FOR[answer]}")

        report = await run_plan(plan, None, out, target=target, beside=detected())
        await client.post(
            _on(plan.url, "/call-status"),
            data={
                "CallSid": call_sid,
                "CallStatus": "completed",
                "CallDuration": str(round(time.monotonic() - started)),
            },
        )
    return report
