// Audio worklets of the softphone. The AudioContext runs at 8 kHz, so Chromium resamples the
// microphone to the phone rate and these processors see telephone samples directly.

const BIAS = 0x84;
const CLIP = 32635;

function ulawEncode(sample) {
  // G.711 mu-law of one 16-bit sample (the classic bias-and-segment encoder).
  let s = Math.max(-32768, Math.min(32767, Math.round(sample)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  if (s > CLIP) s = CLIP;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

// Microphone -> 20 ms frames of 160 mu-law bytes, posted to the page.
class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Uint8Array(160);
    this.fill = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.frame[this.fill++] = ulawEncode(channel[i] * 32767);
        if (this.fill === 160) {
          this.port.postMessage(this.frame.slice(0));
          this.fill = 0;
        }
      }
    }
    return true;
  }
}

// The loudspeaker: plays queued samples in order, reports each mark once the audio queued
// before it has played, and on clear drops the queue and reports every pending mark at once
// (as Twilio does; those echoes mean "cleared", not "played").
class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = [];   // [{samples: Float32Array, offset}] or [{mark: name}]
    this.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "audio") this.chunks.push({ samples: msg.samples, offset: 0 });
      else if (msg.type === "mark") this.chunks.push({ mark: msg.name });
      else if (msg.type === "clear") {
        const marks = this.chunks.filter((c) => c.mark !== undefined).map((c) => c.mark);
        this.chunks = [];
        this.port.postMessage({ type: "cleared", marks });
      }
      this.flushMarks();
    };
  }
  flushMarks() {
    while (this.chunks.length && this.chunks[0].mark !== undefined) {
      this.port.postMessage({ type: "mark", name: this.chunks.shift().mark });
    }
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.chunks.length) {
      const head = this.chunks[0];
      if (head.mark !== undefined) {
        this.port.postMessage({ type: "mark", name: head.mark });
        this.chunks.shift();
        continue;
      }
      const n = Math.min(out.length - i, head.samples.length - head.offset);
      out.set(head.samples.subarray(head.offset, head.offset + n), i);
      head.offset += n;
      i += n;
      if (head.offset >= head.samples.length) this.chunks.shift();
    }
    out.fill(0, i);
    this.flushMarks();
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
registerProcessor("player", Player);
