// The softphone page: Twilio's side of a call, in the browser.

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

function hex(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

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

function addLine(line) {
  if (line.event === "call_ended") { status(`Call ended (${line.reason}).`); return; }
  if (line.event !== "transcript") return;
  const li = document.createElement("li");
  li.className = line.role + (line.interrupted ? " interrupted" : "");
  li.dataset.role = line.role;
  const role = document.createElement("span");
  role.className = "role";
  role.textContent = line.role === "agent" ? "Agent:" : "You:";
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = line.text || "(not understood)";
  li.append(role, text);
  $("transcript").append(li);
}

let call = null;

async function placeCall() {
  $("call").disabled = true;
  $("transcript").replaceChildren();
  // A watch ticket first: the CallSid to place the call under, and the key that alone
  // opens its transcript (another page, knowing the CallSid, gets nothing).
  const watch = await fetch("/softphone/watch", { method: "POST" });
  if (!watch.ok) throw new Error(`no watch ticket (HTTP ${watch.status})`);
  const ticket = await watch.json();
  const callSid = ticket.call_sid, accountSid = "AC" + hex(16), streamSid = "MZ" + hex(16);
  const from = $("from").value, to = $("to").value;

  // Subscribe to the transcript before the call exists, so no line is missed.
  const query = new URLSearchParams({ call_sid: callSid, key: ticket.key });
  const events = new EventSource(`/softphone-events?${query}`);
  events.onmessage = (e) => addLine(JSON.parse(e.data));
  await new Promise((resolve) => { events.onopen = resolve; });

  status("Taking the microphone…");
  const ctx = new AudioContext({ sampleRate: 8000 });
  await ctx.audioWorklet.addModule("/softphone/worklet.js");
  const media = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  });
  const source = ctx.createMediaStreamSource(media);
  const mic = new AudioWorkletNode(ctx, "mic-capture");
  const player = new AudioWorkletNode(ctx, "player");
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(mic).connect(mute).connect(ctx.destination);
  player.connect(ctx.destination);

  status("Ringing…");
  const form = new URLSearchParams({
    CallSid: callSid, AccountSid: accountSid, From: from, To: to, Caller: from, Called: to,
    CallStatus: "ringing", Direction: "inbound", ApiVersion: "2010-04-01",
  });
  const answer = await fetch("/incoming-call", { method: "POST", body: form });
  const twiml = new DOMParser().parseFromString(await answer.text(), "text/xml");
  const stream = twiml.querySelector("Connect > Stream");
  if (!answer.ok || !stream) {
    status(`The bridge did not connect the call (HTTP ${answer.status}).`);
    events.close(); media.getTracks().forEach((t) => t.stop()); await ctx.close();
    $("call").disabled = false;
    return;
  }
  const parameters = {};
  for (const p of stream.querySelectorAll("Parameter")) parameters[p.getAttribute("name")] = p.getAttribute("value");

  const ws = new WebSocket(stream.getAttribute("url"));
  let seq = 0, chunk = 0;
  const started = performance.now();
  const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  const numbered = (msg) => send({ ...msg, sequenceNumber: String(++seq) });

  ws.onopen = () => {
    send({ event: "connected", protocol: "Call", version: "1.0.0" });
    numbered({
      event: "start", streamSid,
      start: {
        accountSid, streamSid, callSid, tracks: ["inbound"],
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
        customParameters: parameters,
      },
    });
    status("Connected: speak now.");
    $("hangup").disabled = false;
    mic.port.onmessage = (e) => {
      chunk++;
      numbered({
        event: "media", streamSid,
        media: { track: "inbound", chunk: String(chunk), timestamp: String(Math.round(performance.now() - started)), payload: bytesToB64(e.data) },
      });
    };
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
  ws.onclose = () => hangUp("the bridge closed the stream");

  call = { ws, ctx, media, events, callSid, streamSid, accountSid, numbered };
  window.softphone = call;
}

async function hangUp(reason) {
  if (!call) return;
  const { ws, ctx, media, callSid, streamSid, accountSid, numbered } = call;
  call = null;
  numbered({ event: "stop", streamSid, stop: { accountSid, callSid } });
  ws.close();
  media.getTracks().forEach((t) => t.stop());
  await ctx.close();
  status(reason ? `Call ended: ${reason}.` : "Call ended.");
  $("hangup").disabled = true;
  $("call").disabled = false;
}

$("call").onclick = () => placeCall().catch((err) => { status(`Error: ${err.message}`); $("call").disabled = false; });
$("hangup").onclick = () => hangUp();
