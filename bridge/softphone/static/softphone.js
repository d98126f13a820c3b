// The softphone page: Twilio's side of a call, in the browser, and a console around it.
//
// Every call is an Attempt that owns what it opened (microphone, audio graph, transcript
// feed, media stream, timer) and releases all of it on every way out: a failure at any step,
// a hang-up while still ringing, the end of the call. Chromium allows six connections per
// host, so one leaked EventSource per call used to freeze the sixth call of a tab.

import { appendRow, clock, describe, reasonText } from "/softphone/feed.js";

const $ = (id) => document.getElementById(id);
const KEYS = "123456789*0#";
const FEED_END_WAIT_MS = 3000; // after the stream closes: how long to wait for call_ended
const FEED_OPEN_WAIT_MS = 5000;
const DEFAULT_TO = "+15550002222";

class Cancelled extends Error {}

// An error with what the page should say: `kind` picks the state shown (data-error).
class CallError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const SECURE = window.isSecureContext && !!navigator.mediaDevices?.getUserMedia;

// --- the page's state --------------------------------------------------------------------

const ACTIVE = new Set(["connecting", "ringing", "in-call", "ending"]);

function show(state, text, { kind = "info", error = "" } = {}) {
  document.body.dataset.state = state;
  document.body.dataset.error = error;
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
  const active = ACTIVE.has(state);
  $("call").disabled = active || !SECURE;
  $("hangup").disabled = !active || state === "ending";
  for (const button of $("keypad").children) button.disabled = state !== "in-call";
  for (const id of ["persona", "to", "from"]) $(id).disabled = active;
}

function showError(err) {
  if (err instanceof CallError) {
    show("error", err.message, { kind: err.kind === "busy" ? "warn" : "error", error: err.kind });
  } else {
    show("error", `Error: ${err.message || err}`, { kind: "error", error: "failed" });
  }
}

const transcript = () => $("transcript");
const note = (text, tone) => appendRow(transcript(), { kind: "note", text, tone });

// --- one call's resources ----------------------------------------------------------------

class Attempt {
  constructor() {
    this.cleanups = [];
    this.cancelled = false;
    this.feed = null; // the EventSource, closed last (it brings the call's end reason)
    this.ended = new Promise((resolve) => { this.resolveEnded = resolve; });
    this.cancelSignal = new Promise((_, reject) => { this.rejectCancel = reject; });
    this.cancelSignal.catch(() => {});
    this.abort = new AbortController(); // its fetches, given up with the attempt
  }

  // Keep `release` to run when the call is over; if it already is, run it now.
  own(release) {
    if (this.cancelled) {
      run(release);
      throw new Cancelled();
    }
    this.cleanups.push(release);
  }

  // Wait for `promise`, unless the attempt is cancelled first.
  wait(promise) {
    return Promise.race([promise, this.cancelSignal]);
  }

  releaseCall() {
    while (this.cleanups.length) run(this.cleanups.pop());
  }

  closeFeed() {
    if (this.feed) this.feed.close();
    this.feed = null;
  }

  cancel() {
    this.cancelled = true;
    this.rejectCancel(new Cancelled());
    this.abort.abort();
    this.releaseCall();
    this.closeFeed();
  }
}

function run(release) {
  try {
    const result = release();
    if (result && typeof result.catch === "function") result.catch(() => {});
  } catch (err) {
    console.warn("softphone: cleanup failed", err);
  }
}

// --- the steps of placing a call ---------------------------------------------------------

async function microphone() {
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
  } catch (err) {
    if (err.name === "NotAllowedError" || err.name === "SecurityError") {
      throw new CallError("mic-denied",
        `The browser refused the microphone (${err.message}).\n` +
        "Allow it for this page: click the icon at the left of the address bar, set Microphone " +
        "to Allow (in Chrome also check Settings › Privacy and security › Site settings › " +
        "Microphone), then press Call again.");
    }
    if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
      throw new CallError("mic-missing", "No microphone was found: plug one in (or pick one in the browser's settings), then press Call again.");
    }
    if (err.name === "NotReadableError") {
      throw new CallError("mic-busy", "The microphone could not be opened: another program may be using it. Close it, then press Call again.");
    }
    throw new CallError("mic-failed", `The microphone could not be opened (${err.name}: ${err.message}).`);
  }
}

function unreachable() {
  return new CallError("unreachable",
    `The bridge is not reachable at ${location.origin}: is “voicebridge serve” (make run) ` +
    "still running? Start it, then press Call again.");
}

async function bridgeFetch(attempt, url, init) {
  try {
    return await attempt.wait(fetch(url, { ...init, signal: attempt.abort.signal }));
  } catch (err) {
    if (err instanceof Cancelled) throw err;
    throw unreachable(); // fetch rejects only when no HTTP answer came back at all
  }
}

function openFeed(attempt, callSid, key) {
  const query = new URLSearchParams({ call_sid: callSid, key });
  const events = new EventSource(`/softphone-events?${query}`);
  attempt.feed = events;
  events.onmessage = (e) => {
    const line = JSON.parse(e.data);
    const row = describe(line);
    if (row) appendRow(transcript(), row);
    if (line.event === "call_ended") attempt.resolveEnded(line);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(unreachable()), FEED_OPEN_WAIT_MS);
    events.onopen = () => { clearTimeout(timer); resolve(events); };
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) { clearTimeout(timer); reject(unreachable()); }
    };
  });
}

// What to say when the webhook answered without `<Connect><Stream>`.
function refusal(answer, body, twiml) {
  const say = twiml?.querySelector("Say")?.textContent?.trim();
  if (answer.ok && say) {
    const hangup = twiml.querySelector("Hangup") ? " and hung up" : "";
    return new CallError("busy", `The bridge did not take the call: it said “${say}”${hangup}.`);
  }
  const detail = body.trim().slice(0, 200);
  return new CallError("refused", `The bridge refused the call (HTTP ${answer.status}${detail ? `: ${detail}` : ""}).`);
}

function opened(ws) {
  return new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onclose = (e) => reject(new CallError("stream", `The bridge did not open the media stream (WebSocket closed, code ${e.code}${e.reason ? `: ${e.reason}` : ""}).`));
  });
}

// --- placing, holding and ending a call --------------------------------------------------

let current = null; // the Attempt of the call in progress, if any
let call = null; // the connected call's live parts

async function placeCall() {
  if (current) return;
  const attempt = (current = new Attempt());
  transcript().replaceChildren();
  $("callsid").textContent = "";
  $("timer").textContent = clock(0);
  try {
    await connect(attempt);
  } catch (err) {
    const mine = current === attempt;
    attempt.releaseCall();
    attempt.closeFeed();
    if (err instanceof Cancelled || !mine) return; // hangUp has shown the end already
    current = null;
    showError(err);
  }
}

async function connect(attempt) {
  show("connecting", "Taking the microphone…");
  // The microphone first: a refusal then leaves nothing else open.
  const asked = microphone();
  // Granted only after a hang-up (the browser's prompt was still open): give it back.
  asked.then((m) => { if (attempt.cancelled) m.getTracks().forEach((t) => t.stop()); }, () => {});
  const media = await attempt.wait(asked);
  attempt.own(() => media.getTracks().forEach((t) => t.stop()));
  const ctx = new AudioContext({ sampleRate: 8000 });
  attempt.own(() => ctx.close());
  try {
    await attempt.wait(ctx.audioWorklet.addModule("/softphone/worklet.js"));
  } catch (err) {
    if (err instanceof Cancelled) throw err;
    throw unreachable();
  }
  const source = ctx.createMediaStreamSource(media);
  const mic = new AudioWorkletNode(ctx, "mic-capture");
  const player = new AudioWorkletNode(ctx, "player");
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(mic).connect(mute).connect(ctx.destination);
  player.connect(ctx.destination);
  attempt.own(() => { mic.port.onmessage = null; player.port.onmessage = null; source.disconnect(); });

  // A watch ticket: the CallSid to place the call under, and the key that alone opens its
  // transcript (another page, knowing the CallSid, gets nothing).
  const watch = await bridgeFetch(attempt, "/softphone/watch", { method: "POST" });
  if (!watch.ok) throw new CallError("refused", `The bridge gave no watch ticket (HTTP ${watch.status}): is the softphone on (SOFTPHONE_ENABLED)?`);
  const ticket = await attempt.wait(watch.json());
  const callSid = ticket.call_sid, accountSid = "AC" + hex(16), streamSid = "MZ" + hex(16);
  const from = $("from").value.trim(), to = $("to").value.trim();
  $("callsid").textContent = callSid;

  // Subscribe to the transcript before the call exists, so no line is missed.
  await attempt.wait(openFeed(attempt, callSid, ticket.key));

  show("ringing", `Ringing ${to || "the bridge"}…`);
  const form = new URLSearchParams({
    CallSid: callSid, AccountSid: accountSid, From: from, To: to, Caller: from, Called: to,
    CallStatus: "ringing", Direction: "inbound", ApiVersion: "2010-04-01",
  });
  const answer = await bridgeFetch(attempt, "/incoming-call", { method: "POST", body: form });
  const body = await attempt.wait(answer.text());
  const twiml = new DOMParser().parseFromString(body, "text/xml");
  const stream = answer.ok ? twiml.querySelector("Connect > Stream") : null;
  if (!stream) throw refusal(answer, body, twiml);
  const action = stream.parentElement.getAttribute("action");
  const parameters = {};
  for (const p of stream.querySelectorAll("Parameter")) parameters[p.getAttribute("name")] = p.getAttribute("value");

  const ws = new WebSocket(stream.getAttribute("url"));
  attempt.own(() => { ws.onclose = null; ws.onmessage = null; ws.close(); });
  await attempt.wait(opened(ws));

  let seq = 0, chunk = 0;
  const started = performance.now();
  const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  const numbered = (msg) => send({ ...msg, sequenceNumber: String(++seq) });
  send({ event: "connected", protocol: "Call", version: "1.0.0" });
  numbered({
    event: "start", streamSid,
    start: {
      accountSid, streamSid, callSid, tracks: ["inbound"],
      mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      customParameters: parameters,
    },
  });
  mic.port.onmessage = (e) => {
    chunk++;
    numbered({
      event: "media", streamSid,
      media: { track: "inbound", chunk: String(chunk), timestamp: String(Math.round(performance.now() - started)), payload: bytesToB64(e.data) },
    });
  };
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.event === "media") {
      const bytes = b64ToBytes(msg.media.payload);
      const samples = new Float32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) samples[i] = ULAW_TABLE[bytes[i]];
      player.port.postMessage({ type: "audio", samples }, [samples.buffer]);
    } else if (msg.event === "mark") {
      player.port.postMessage({ type: "mark", name: msg.mark.name });
    } else if (msg.event === "clear") {
      player.port.postMessage({ type: "clear" });
    }
  };
  player.port.onmessage = (e) => {
    const names = e.data.type === "cleared" ? e.data.marks : [e.data.name];
    for (const name of names) numbered({ event: "mark", streamSid, mark: { name } });
  };
  ws.onclose = (e) => endCall(`the bridge closed the stream (code ${e.code}${e.reason ? `: ${e.reason}` : ""})`);

  const timer = setInterval(() => { $("timer").textContent = clock((performance.now() - started) / 1000); }, 250);
  attempt.own(() => clearInterval(timer));
  call = {
    attempt, started, action, form,
    key: (digit) => numbered({ event: "dtmf", streamSid, dtmf: { track: "inbound_track", digit } }),
    stop: () => numbered({ event: "stop", streamSid, stop: { accountSid, callSid } }),
  };
  window.softphone = { callSid, streamSid };
  show("in-call", "Connected: speak now, or use the keypad.", { kind: "ok" });
}

// Ends the call in progress: `byCaller` sends Twilio's `stop` first. The feed stays open
// until the bridge's `call_ended` arrives (its reason and figures), then closes, always.
async function endCall(why, { byCaller = false } = {}) {
  const attempt = current;
  if (!attempt) return;
  if (!call || call.attempt !== attempt) {
    // Still connecting or ringing: give up the attempt and everything it opened.
    attempt.cancel();
    current = null;
    show("ended", "Call cancelled before it was answered.");
    note("Call cancelled before it was answered.");
    return;
  }
  const live = call;
  call = null;
  if (byCaller) live.stop();
  const seconds = (performance.now() - live.started) / 1000;
  $("timer").textContent = clock(seconds);
  attempt.releaseCall();
  show("ending", byCaller ? "Hanging up…" : "The call is ending…");
  let ended = null, after = null;
  try {
    // When the bridge closed the stream, Twilio asks the <Connect> action what happens next;
    // a caller who hung up has ended the call, and nothing follows.
    [ended, after] = await Promise.all([
      Promise.race([attempt.ended, sleep(FEED_END_WAIT_MS).then(() => null)]),
      byCaller ? null : afterStream(live),
    ]);
  } finally {
    attempt.closeFeed();
    if (current === attempt) current = null;
  }
  if (after) appendRow(transcript(), { event: "after_stream", kind: "note", ...after });
  if (ended) {
    $("timer").textContent = clock(ended.duration_s || seconds);
    show("ended", `Call ended: ${reasonText(ended.reason)} (${clock(ended.duration_s || seconds)}).`);
    document.body.dataset.reason = ended.reason;
  } else {
    show("ended", `Call ended: ${why} (${clock(seconds)}); the bridge sent no end reason.`, { kind: "warn" });
    document.body.dataset.reason = "";
    note(`Call ended: ${why}.`, "warn");
  }
}

// What Twilio does once the bridge has closed the stream: request the <Connect> action (POST,
// the call's parameters) and run the TwiML it returns. Shown, not run: there is no phone line.
async function afterStream(live) {
  if (!live.action) return null;
  const form = new URLSearchParams(live.form);
  form.set("CallStatus", "in-progress");
  let answer, body;
  try {
    answer = await fetch(new URL(live.action, location.href), { method: "POST", body: form, signal: AbortSignal.timeout(FEED_END_WAIT_MS) });
    body = await answer.text();
  } catch {
    return { text: "After the stream, the <Connect> action did not answer: Twilio would say an application error occurred.", tone: "bad" };
  }
  if (!answer.ok) {
    return { text: `After the stream, the <Connect> action answered HTTP ${answer.status}: Twilio would say an application error occurred.`, tone: "bad" };
  }
  const doc = new DOMParser().parseFromString(body, "text/xml");
  const steps = [...(doc.documentElement?.children || [])].map((verb) => {
    const text = verb.textContent.trim();
    if (verb.tagName === "Say") return `says “${text}”`;
    if (verb.tagName === "Dial") return `dials ${text}`;
    if (verb.tagName === "Hangup") return "hangs up";
    return `runs <${verb.tagName}>`;
  });
  return { text: `After the stream, Twilio ${steps.length ? steps.join(", then ") : "ends the call"}.` };
}

function pressKey(digit) {
  if (!call) return;
  call.key(digit);
  const button = [...$("keypad").children].find((b) => b.dataset.digit === digit);
  if (button) {
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 180);
  }
}

// --- personas and the page's controls ----------------------------------------------------

async function loadPersonas() {
  const select = $("persona");
  let personas = [];
  try {
    const response = await fetch("/softphone/personas");
    if (response.ok) personas = await response.json();
  } catch {
    // the bridge is down: the To field still works, and Call will say what is wrong
  }
  const claimed = new Set(personas.flatMap((p) => p.numbers));
  for (const persona of personas) {
    // A persona answers its own numbers; the default also answers any number nobody lists.
    const numbers = persona.numbers.length ? persona.numbers : [unclaimed(claimed)];
    for (const number of numbers) {
      const option = document.createElement("option");
      option.value = number;
      option.dataset.persona = persona.name;
      option.textContent = `${persona.name}${persona.default ? " (default)" : ""} · ${number}`;
      if (persona.default && !select.querySelector("option[selected]")) option.selected = true;
      select.append(option);
    }
  }
  const other = document.createElement("option");
  other.value = "";
  other.textContent = "another number (type it below)";
  select.append(other);
  if (select.value) $("to").value = select.value;
  select.onchange = () => { if (select.value) $("to").value = select.value; };
  $("to").oninput = () => {
    const match = [...select.options].find((o) => o.value && o.value === $("to").value.trim());
    select.value = match ? match.value : "";
  };
}

function unclaimed(claimed) {
  if (!claimed.has(DEFAULT_TO)) return DEFAULT_TO;
  for (let n = 2223; n < 10000; n++) if (!claimed.has(`+1555000${n}`)) return `+1555000${n}`;
  return DEFAULT_TO;
}

function buildKeypad() {
  for (const digit of KEYS) {
    const button = document.createElement("button");
    button.textContent = digit;
    button.dataset.digit = digit;
    button.setAttribute("aria-label", `key ${digit}`);
    button.onclick = () => pressKey(digit);
    $("keypad").append(button);
  }
  document.addEventListener("keydown", (e) => {
    if (!call || e.target instanceof HTMLInputElement || e.repeat) return;
    if (KEYS.includes(e.key)) pressKey(e.key);
  });
}

// --- μ-law and base64 --------------------------------------------------------------------

function hex(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const ULAW_TABLE = (() => {
  const table = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    const u = ~i & 0xff;
    const sign = u & 0x80, exponent = (u >> 4) & 0x07, mantissa = u & 0x0f;
    let s = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    table[i] = (sign ? -s : s) / 32768;
  }
  return table;
})();

function b64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToB64(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin);
}

// --- start -------------------------------------------------------------------------------

buildKeypad();
$("call").onclick = () => placeCall();
$("hangup").onclick = () => endCall("you hung up", { byCaller: true });
window.addEventListener("pagehide", () => { if (current) current.cancel(); });
if (SECURE) {
  show("idle", "Idle.");
} else {
  show("error",
    `This page is not a secure context (${location.origin}): browsers give the microphone only ` +
    `to pages over https or on localhost.\nOpen http://localhost:${location.port || 80}/softphone ` +
    "(or 127.0.0.1) on the machine running the bridge, or reach the bridge over https (a " +
    "tunnel such as ngrok or cloudflared, or a TLS proxy).", { kind: "error", error: "insecure" });
  transcript().replaceChildren();
  note("No call can be placed from this page: see why at the left.", "bad");
}
loadPersonas();
