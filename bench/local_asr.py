"""Intent recognition of the local engine on the phone path, as a table.

Each sentence is spoken by espeak-ng at the simulator's rate, carried as 8 kHz μ-law (what
Twilio carries), brought to 24 kHz by the bridge's resampler, and recognised by the engine
(general model + phrase grammar). Prints per-sentence results, intent accuracy, false intents
on sentences with none, and decode time per utterance.

    .venv/bin/python bench/local_asr.py
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from bridge.audio import Resampler8kTo24k, ulaw_decode
from bridge.engine.asr import Recognizer, known_words
from bridge.engine.policy import detect_intent, grammar_name, phrase_grammar
from bridge.sim.cli import tts_ulaw

WITH_INTENT = {
    "what is the weather in Paris": "web_search",
    "what is the weather in London tomorrow": "web_search",
    "weather forecast in Berlin": "web_search",
    "tell me the news": "web_search",
    "search the news for today": "web_search",
    "I want to talk to a human": "transfer_call",
    "can I speak to an agent please": "transfer_call",
    "transfer me to the operator": "transfer_call",
    "let me speak to a person": "transfer_call",
    "operator": "transfer_call",
    "goodbye": "end_call",
    "okay goodbye then": "end_call",
    "bye bye": "end_call",
}
WITHOUT = [
    "I would like to book an appointment",
    "what time do you open",
    "hello there",
    "my router is broken",
    "thank you very much",
    "my name is john smith",
]


async def main() -> None:
    recognizer = Recognizer()
    grammar = phrase_grammar([], vocabulary=known_words().__contains__)
    name = grammar_name(grammar)
    await recognizer.recognise(np.zeros(24000, np.int16) + 1, name, grammar)  # warm the workers
    rows, hits, false_intents, times = [], 0, 0, []
    for text in [*WITH_INTENT, *WITHOUT]:
        pcm = Resampler8kTo24k().process(ulaw_decode(tts_ulaw(text)))
        started = time.perf_counter()
        hearing = await recognizer.recognise(pcm, name, grammar)
        times.append(time.perf_counter() - started)
        intent = detect_intent(hearing.phrase) or detect_intent(hearing.transcript)
        got = intent.tool if intent else "-"
        want = WITH_INTENT.get(text, "-")
        hits += got == want and want != "-"
        false_intents += want == "-" and got != "-"
        rows.append((text, want, got, hearing.phrase or "", hearing.transcript))
    print(f"{'said':40} {'want':14} {'got':14} {'grammar heard':32} general model heard")
    for text, want, got, phrase, transcript in rows:
        mark = "" if want == got else "  ✗"
        print(f"{text:40} {want:14} {got:14} {phrase:32} {transcript}{mark}")
    print(f"\nintent accuracy: {hits}/{len(WITH_INTENT)}")
    print(f"false intents on sentences without one: {false_intents}/{len(WITHOUT)}")
    print(
        f"decode time per utterance: median {np.median(times) * 1000:.0f} ms,"
        f" max {max(times) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
