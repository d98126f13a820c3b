// The call's live feed as rows of the transcript: what each line the bridge publishes
// (`/softphone-events`, the WATCHED_EVENTS of bridge/stream.py) looks like on the page.
// Pure: `describe` maps a line to a row; `appendRow` puts a row in the list.

const REASONS = {
  caller_hangup: "you hung up",
  agent_hangup: "the agent hung up",
  transferred: "transferred",
  upstream_failed: "the model could not be reached",
  max_duration: "the call reached its longest length",
  idle: "nobody spoke for too long",
  protocol_error: "the stream broke the Media Streams protocol",
  error: "the bridge failed",
  shutdown: "the bridge shut down",
};

const KEY_ACTIONS = {
  say: "the agent says the menu's line",
  to_model: "sent to the model",
  hangup: "hang up",
  transfer: "transfer",
  ignore: "ignored",
};

const LIMITS = {
  max_call_seconds: "longest call",
  idle_seconds: "idle too long",
  idle_reprompt: "silence: the agent asks again",
};

export function reasonText(reason) {
  return REASONS[reason] || String(reason || "unknown");
}

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

const secs = (ms) => `${(Number(ms) / 1000).toFixed(1)} s`;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function shortArguments(text) {
  const s = typeof text === "string" ? text : JSON.stringify(text ?? {});
  return s.length > 80 ? s.slice(0, 77) + "…" : s;
}

// A row: {kind: "agent" | "caller" | "note" | "end", text, meta?, tone?: "bad" | "warn"}.
export function describe(line) {
  const row = describeEvent(line);
  return row && { event: line.event, ...row };
}

function describeEvent(line) {
  switch (line.event) {
    case "call_started":
      return { kind: "note", text: `Call to ${line.persona} (${line.to || "no number"}) from ${line.from || "unknown"}` };
    case "transcript": {
      const caller = line.role === "caller";
      const meta = line.interrupted ? `interrupted after ${secs(line.played_ms || 0)}` : "";
      return { kind: caller ? "caller" : "agent", text: line.text || "(not understood)", meta, interrupted: !!line.interrupted };
    }
    case "barge_in": {
      const ms = line.reaction_ms;
      const reaction = ms == null ? "" : `, audio cut in ${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
      return { kind: "note", tone: "warn", text: `You talked over the agent after ${secs(line.played_ms || 0)} of its reply${reaction}` };
    }
    case "tool_call": {
      const outcome = line.ok ? "ok" : `failed: ${line.error || "error"}`;
      return { kind: "note", tone: line.ok ? undefined : "bad", text: `Tool ${line.name}(${shortArguments(line.arguments)}): ${outcome}`, meta: line.duration_ms == null ? "" : `${Math.round(line.duration_ms)} ms` };
    }
    case "dtmf": {
      const action = KEY_ACTIONS[line.action] || line.action;
      const why = line.reason ? ` (${line.reason})` : "";
      return { kind: "note", text: `Key ${line.digit}: ${action}${why}` };
    }
    case "handoff_started": {
      const by = line.origin === "keypad" ? "by the keypad" : line.origin === "limit" ? "by a limit" : "by the agent";
      const what = line.kind === "transfer" ? `Transferring to ${line.target}` : "Hanging up after the goodbye";
      return { kind: "note", tone: "warn", text: `${what} (asked ${by})` };
    }
    case "handoff_cancelled":
      return { kind: "note", text: `The ${line.kind === "transfer" ? "transfer" : "hang-up"} is called off${line.reason ? `: ${line.reason}` : ""}` };
    case "call_control": {
      // Over Twilio's REST API, or (`via: connect_action`) by ending the stream, after which
      // Twilio runs what the bridge's <Connect> action answers.
      const target = line.target ? ` to ${line.target}` : "";
      const how = line.via === "connect_action" ? " (the stream ends; the <Connect> action does it)" : "";
      const status = line.http_status ? `HTTP ${line.http_status}` : line.error || "no answer";
      const then = line.then === "connect_action" ? "; the stream's end does it instead" : "";
      const outcome = line.ok ? `done${how}` : `failed (${status})${then}`;
      return { kind: "note", tone: line.ok ? undefined : "bad", text: `Call control ${line.action}${target}: ${outcome}` };
    }
    case "call_limit":
      return { kind: "note", tone: "warn", text: `Limit: ${LIMITS[line.limit] || line.limit}${line.seconds == null ? "" : ` (${line.seconds} s)`}` };
    case "upstream_lost":
      return { kind: "note", tone: "bad", text: "The connection to the model was lost: reconnecting…" };
    case "upstream_reconnected":
      return { kind: "note", text: `Reconnected to the model${line.gap_ms == null ? "" : ` after ${Math.round(line.gap_ms)} ms`}` };
    case "call_ended": {
      const parts = [clock(line.duration_s || 0), plural(line.turns || 0, "turn"), plural(line.barge_ins || 0, "barge-in")];
      return { kind: "end", text: `Call ended: ${reasonText(line.reason)}`, meta: parts.join(" · ") };
    }
    default:
      return null;
  }
}

export function appendRow(list, row) {
  const li = document.createElement("li");
  if (row.event) li.dataset.event = row.event;
  li.className = row.kind + (row.tone ? ` ${row.tone}` : "") + (row.interrupted ? " interrupted" : "");
  if (row.kind === "agent" || row.kind === "caller") {
    li.dataset.role = row.kind;
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = row.kind === "agent" ? "Agent:" : "You:";
    li.append(role);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = row.text;
  li.append(text);
  if (row.meta) {
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = row.meta;
    li.append(meta);
  }
  list.append(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}
