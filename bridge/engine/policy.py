"""The local engine's "model": a small rule-based dialogue policy.

It answers the way the bridge needs a model to answer, so a whole call flow can be tried
offline: it greets with the words the bridge quotes, recognises a few intents by keywords
and calls the matching tool, reads tool results back briefly, and otherwise says what it
heard. Intents and their phrases live here; the recogniser's phrase grammar is built from
the same table (:func:`phrase_grammar`), so what can be recognised and what is acted on
cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bridge.engine.items import (
    FunctionCallItem,
    FunctionCallOutputItem,
    Item,
    MessageItem,
)
from bridge.engine.responder import Output, ResponseRequest, Speech, ToolCall


@dataclass(frozen=True)
class Intent:
    """One thing a caller can ask for: the tool it calls, the keywords that reveal it in a
    recognised phrase or transcript, and the JSGF phrases the recogniser listens for."""

    tool: str
    keywords: frozenset[str]
    rules: Mapping[str, str]
    """JSGF rule name → body; ``<intent_…>`` rules are the public alternatives."""


PLACES: Final = (
    "paris london berlin madrid rome tokyo boston chicago seattle denver dallas miami "
    "atlanta toronto sydney dublin amsterdam vienna"
).split()
"""Places the weather phrases know. A grammar cannot take arbitrary words; a short list of
well-known cities covers a demo and a test."""

SEARCH = Intent(
    tool="web_search",
    keywords=frozenset({"weather", "forecast", "news", "search", "headlines"}),
    rules={
        "place": " | ".join(PLACES) + " | new york | san francisco | los angeles",
        "when": "today | tomorrow | tonight | this week | this weekend",
        "intent_weather": (
            "[what is | whats] the weather [like] [in <place>] [<when>]"
            " | [the] weather [forecast] [for | in] [<place>] [<when>]"
        ),
        "intent_news": (
            "[tell me | what is | whats] the news [<when>] | [the] latest news"
            " | [the] headlines [<when>] | search the news [for <when>]"
        ),
        "intent_search": "[please] search [the web] [for] [<place> | the news | the weather]",
    },
)

TRANSFER = Intent(
    tool="transfer_call",
    keywords=frozenset(
        {"human", "agent", "operator", "person", "someone", "representative", "transfer"}
    ),
    rules={
        "who": "a human | an agent | a person | the operator | someone | a representative",
        "intent_transfer": (
            "[i want to | i would like to | can i | let me] (talk | speak) to <who> [please]"
            " | transfer me [to <who>] | operator | [a] human | [an] agent | representative"
        ),
    },
)

END = Intent(
    tool="end_call",
    keywords=frozenset({"goodbye", "bye"}),
    rules={
        "intent_end": (
            "goodbye | bye | bye bye | [okay | thanks | thank you] goodbye [then]"
            " | thanks bye | that is all goodbye"
        ),
    },
)

INTENTS: Final = (SEARCH, TRANSFER, END)

OTHER_RULE: Final = (
    "hello | hi | yes | no | thank you | thanks | okay | i need help | can you help me"
    " | my name is | what time is it | what can you do"
)
"""Everyday phrases with no intent. They give the grammar somewhere to put speech that is
none of the intents, which cuts false intents (a closed grammar always picks *something*)."""

DEFAULT_TOOLS: Final = tuple(intent.tool for intent in INTENTS)
"""The tools assumed when a session declares none. The bridge answers every function call
(one it does not offer gets an error result, which the policy then speaks about), so a
session without declared tools still shows the whole call flow; once tools are declared,
only those are called, as a model would."""

DEFAULT_TRANSFER_TARGET: Final = "operator"
MAX_SPOKEN_CHARS: Final = 220
"""Tool results are read back in about this many characters: two short sentences."""

_QUOTED = re.compile(r"\"([^\"]{2,})\"")
_KEYPAD = re.compile(r"^the caller pressed (.+?) on the keypad\.?$", re.IGNORECASE)
"""How the bridge tells a model about a key press (`bridge.tools.dtmf.to_model_text`)."""
_FAILED_TRANSFER = re.compile(
    r"transfer (?:to|the caller to) (.+?)(?: did not go through|, but the transfer was not)",
    re.IGNORECASE,
)
_APOLOGY = re.compile(r"\bapologi[sz]e\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z']*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("what's", "whats"))


def phrase_grammar(
    targets: Iterable[str] = (), vocabulary: Callable[[str], bool] | None = None
) -> str:
    """The JSGF grammar of every intent's phrases, plus the everyday ones.

    ``targets`` are transfer-target names (e.g. from the ``transfer_call`` tool's schema):
    "transfer me to billing" is a phrase too. ``vocabulary`` says whether the recogniser's
    dictionary knows a word; names with unknown words are left out of the grammar.
    """
    rules: dict[str, str] = {}
    for intent in INTENTS:
        rules.update(intent.rules)
    names = []
    for target in targets:
        words = _words(target.replace("-", " ").replace("_", " "))
        if words and (vocabulary is None or all(vocabulary(w) for w in words)):
            names.append(" ".join(words))
    if names:
        rules["who"] = rules["who"] + " | " + " | ".join(sorted(set(names)))
    rules["other"] = OTHER_RULE
    public = " | ".join(f"<{name}>" for name in rules if name.startswith("intent_"))
    lines = ["#JSGF V1.0;", "grammar intents;"]
    lines += [f"<{name}> = {body};" for name, body in rules.items()]
    lines.append(f"public <utterance> = {public} | <other>;")
    return "\n".join(lines) + "\n"


def grammar_name(grammar: str) -> str:
    """A short stable name for a grammar's text (recogniser workers cache by name)."""
    return "g" + hashlib.sha1(grammar.encode()).hexdigest()[:12]


def detect_intent(text: str | None) -> Intent | None:
    """The first intent whose keyword occurs in ``text``."""
    if not text:
        return None
    words = set(_words(text))
    for intent in INTENTS:
        if words & intent.keywords:
            return intent
    return None


def declared_tools(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The session's function tools by name."""
    out = {}
    for tool in tools:
        name = tool.get("name")
        if isinstance(name, str) and tool.get("type", "function") == "function":
            out[name] = tool
    return out


def transfer_targets(tool: Mapping[str, Any] | None) -> list[str]:
    """Target names a ``transfer_call`` tool offers (its ``target`` parameter's enum)."""
    if not tool:
        return []
    params = tool.get("parameters")
    if not isinstance(params, Mapping):
        return []
    props = params.get("properties")
    target = props.get("target") if isinstance(props, Mapping) else None
    enum = target.get("enum") if isinstance(target, Mapping) else None
    return [str(v) for v in enum] if isinstance(enum, list) else []


def choose_target(tool: Mapping[str, Any] | None, said: str | None) -> str:
    """The target the caller named, else the operator, else the first one offered."""
    targets = transfer_targets(tool)
    spoken = " ".join(_words(said or ""))
    for target in targets:
        if " ".join(_words(target.replace("-", " "))) in spoken and target != "":
            return target
    if DEFAULT_TRANSFER_TARGET in targets or not targets:
        return DEFAULT_TRANSFER_TARGET
    return targets[0]


def summarise(tool: str, output: str) -> str:
    """A short spoken sentence about a tool's output."""
    try:
        data: Any = json.loads(output)
    except ValueError:
        data = output
    error = _field(data, "error")
    if error:
        if tool == "web_search":
            return f"Sorry, I couldn't look that up right now: {_clip(error)}"
        return f"Sorry, that didn't work: {_clip(error)}"
    if tool == "transfer_call":
        return "I'm putting you through now."
    if tool == "end_call":
        return "Goodbye!"
    text = _field(data, "answer") or _first_result(data) or _field(data, "result")
    if not text and isinstance(data, str):
        text = data
    if not text:
        return "I looked that up, but found nothing useful."
    return f"Here is what I found. {_clip(text)}"


def _field(data: Any, key: str) -> str | None:
    if isinstance(data, Mapping):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, Mapping):
            return _field(value, "message") or json.dumps(value)[:MAX_SPOKEN_CHARS]
    return None


def _first_result(data: Any) -> str | None:
    results = data.get("results") if isinstance(data, Mapping) else data
    if isinstance(results, list):
        for result in results:
            if isinstance(result, Mapping):
                text = _field(result, "content") or _field(result, "snippet")
                text = text or _field(result, "title")
                if text:
                    return text
            elif isinstance(result, str) and result.strip():
                return result.strip()
    return None


def _clip(text: str) -> str:
    """At most two sentences and :data:`MAX_SPOKEN_CHARS`, cut at a word."""
    text = " ".join(text.split())
    sentences = _SENTENCE_END.split(text)
    text = " ".join(sentences[:2])
    if len(text) > MAX_SPOKEN_CHARS:
        text = text[:MAX_SPOKEN_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "."
    return text


PhraseLookup = Callable[[str], str | None]
"""item id → the phrase the grammar recognised in that caller turn (None if none)."""


class DialoguePolicy:
    """The :class:`~bridge.engine.responder.Responder` of the local engine.

    Parameters:
        phrases: what the phrase grammar recognised per caller item (the recogniser fills
            it while transcribing; the engine waits for transcripts before responding).
    """

    def __init__(self, phrases: PhraseLookup = lambda _item_id: None) -> None:
        self._phrases = phrases

    def respond(self, request: ResponseRequest) -> list[Output]:
        instructions = request.overrides.get("instructions")
        quoted = _quoted(instructions)
        if quoted:
            # The bridge asks for exact words (greeting, fillers, goodbyes) by quoting them.
            return [Speech(quoted)]
        apology = _apology(instructions)
        if apology:
            # The bridge asks for an apology in its own words (a transfer that failed).
            return [Speech(apology)]
        tail = _since_last_assistant_message(request.conversation)
        results = [item for item in tail if isinstance(item, FunctionCallOutputItem)]
        if results:
            names = {
                item.call_id: item.name
                for item in request.conversation
                if isinstance(item, FunctionCallItem)
            }
            return [
                Speech(" ".join(summarise(names.get(r.call_id, ""), r.output) for r in results))
            ]
        users = [i for i in tail if isinstance(i, MessageItem) and i.role == "user"]
        if not users:
            return [Speech("Hello! How can I help you?")]
        keys = [key for key in (_pressed(u.text) for u in users) if key]
        if keys and _pressed(users[-1].text):
            # Every press since the agent last spoke: keys pressed quickly share one answer.
            offered = set(declared_tools(request.tools)) or set(DEFAULT_TOOLS)
            return [Speech(f"You pressed {_and(keys)} on the keypad. {_capabilities(offered)}")]
        return self._answer(users[-1], request)

    def _answer(self, user: MessageItem, request: ResponseRequest) -> list[Output]:
        said = user.text
        phrase = self._phrases(user.id)
        typed = any(p.type == "input_text" for p in user.content)
        intent = detect_intent(phrase) or detect_intent(said)
        tools = declared_tools(request.tools)
        offered = set(tools) if tools else set(DEFAULT_TOOLS)
        if intent is not None and intent.tool in offered:
            if intent is SEARCH:
                query = said if typed else (phrase if detect_intent(phrase) else said)
                return [ToolCall("web_search", json.dumps({"query": query or "news"}))]
            if intent is TRANSFER:
                target = choose_target(tools.get("transfer_call"), phrase or said)
                return [ToolCall("transfer_call", json.dumps({"target": target}))]
            return [ToolCall("end_call", "{}")]
        if not said.strip():
            return [Speech("Sorry, I didn't catch that. Could you say it again?")]
        heard = f"I heard: {said.strip().rstrip('.!?')}."
        if intent is not None:
            # Asked for what this session offers no tool for: say so, as a model would.
            return [Speech(f"{heard} Sorry, I can't {_UNOFFERED[intent.tool]} on this line.")]
        return [Speech(f"{heard} {_capabilities(offered)}")]


_UNOFFERED: Final = {
    "web_search": "look things up",
    "transfer_call": "put you through to a person",
    "end_call": "hang up myself, but you can",
}


def _capabilities(offered: set[str]) -> str:
    things = []
    if "web_search" in offered:
        things.append("look up the weather or the news")
    if "transfer_call" in offered:
        things.append("put you through to a person")
    if not things:
        return "How can I help?"
    return "I can " + " or ".join(things) + "."


def _pressed(text: str) -> str | None:
    """The key a keypad message names ("5", "pound", "star"), or None for other text."""
    match = _KEYPAD.match(text.strip())
    if match is None:
        return None
    return match.group(1).split(" (", 1)[0]


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _apology(instructions: object) -> str | None:
    """Spoken words for an instruction to apologise, which names no exact words."""
    if not isinstance(instructions, str) or not _APOLOGY.search(instructions):
        return None
    failed = _FAILED_TRANSFER.search(instructions)
    if failed:
        return (
            f"Sorry, the transfer to {failed.group(1)} didn't go through. "
            "Is there anything else I can help you with?"
        )
    return "Sorry about that. Is there anything else I can help you with?"


def _quoted(instructions: object) -> str | None:
    if not isinstance(instructions, str):
        return None
    found = _QUOTED.findall(instructions)
    return found[-1].strip() if found else None


def _since_last_assistant_message(conversation: Sequence[Item]) -> list[Item]:
    for index in range(len(conversation) - 1, -1, -1):
        item = conversation[index]
        if isinstance(item, MessageItem) and item.role == "assistant":
            return list(conversation[index + 1 :])
    return list(conversation)
