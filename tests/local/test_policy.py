"""The local dialogue policy: greeting, intents, tool results, fallback."""

from __future__ import annotations

import json

from bridge.engine.asr import known_words
from bridge.engine.items import ContentPart, FunctionCallItem, FunctionCallOutputItem, MessageItem
from bridge.engine.policy import DialoguePolicy, detect_intent, phrase_grammar, summarise
from bridge.engine.responder import ResponseRequest, Speech, ToolCall
from bridge.tools.dtmf import to_model_text

TRANSFER_TOOL = {
    "type": "function",
    "name": "transfer_call",
    "parameters": {"type": "object", "properties": {"target": {"enum": ["billing", "operator"]}}},
}


END_ONLY = ({"type": "function", "name": "end_call"},)


def user(text: str, item_id: str = "u1", typed: bool = False) -> MessageItem:
    part = (
        ContentPart("input_text", text=text)
        if typed
        else ContentPart("input_audio", transcript=text)
    )
    return MessageItem(item_id, "user", [part])


def request(*items: object, tools: tuple = (), instructions: str | None = None) -> ResponseRequest:
    overrides = {"instructions": instructions} if instructions else {}
    return ResponseRequest("resp_1", tuple(items), "", tools=tools, overrides=overrides)  # type: ignore[arg-type]


def test_the_greeting_is_the_text_the_bridge_quotes() -> None:
    instructions = 'Greet the caller by saying exactly this, and nothing else: "Hi, this is Ada."'
    assert DialoguePolicy().respond(request(instructions=instructions)) == [
        Speech("Hi, this is Ada.")
    ]


def test_a_recognised_weather_phrase_becomes_a_web_search_with_it_as_the_query() -> None:
    policy = DialoguePolicy(lambda item_id: "what is the weather in paris")
    out = policy.respond(request(user("what the willy nilly")))
    assert out == [ToolCall("web_search", json.dumps({"query": "what is the weather in paris"}))]


def test_asking_for_a_human_transfers_to_the_operator_when_offered() -> None:
    out = DialoguePolicy().respond(request(user("can i talk to a human"), tools=(TRANSFER_TOOL,)))
    assert out == [ToolCall("transfer_call", json.dumps({"target": "operator"}))]


def test_a_named_target_wins_over_the_operator() -> None:
    policy = DialoguePolicy(lambda _: "transfer me to billing")
    out = policy.respond(request(user("transfer me"), tools=(TRANSFER_TOOL,)))
    assert out == [ToolCall("transfer_call", json.dumps({"target": "billing"}))]


def test_goodbye_ends_the_call() -> None:
    assert DialoguePolicy().respond(request(user("okay goodbye"))) == [ToolCall("end_call", "{}")]


def test_an_intent_whose_tool_the_session_does_not_offer_is_declined() -> None:
    end_only = ({"type": "function", "name": "end_call"},)
    [speech] = DialoguePolicy().respond(request(user("what is the weather"), tools=end_only))
    assert speech == Speech(
        "I heard: what is the weather. Sorry, I can't look things up on this line."
    )


def test_tool_results_are_read_back_briefly() -> None:
    items = (
        user("weather in paris"),
        FunctionCallItem("f1", "call_1", "web_search", '{"query": "weather in paris"}'),
        FunctionCallOutputItem("o1", "call_1", json.dumps({"answer": "Sunny, 21 degrees. " * 30})),
    )
    [speech] = DialoguePolicy().respond(request(*items))
    assert isinstance(speech, Speech)
    assert speech.text.startswith("Here is what I found. Sunny, 21 degrees.")
    assert len(speech.text) < 260


def test_a_failed_search_is_explained() -> None:
    text = summarise("web_search", json.dumps({"error": "web search is not configured"}))
    assert text == "Sorry, I couldn't look that up right now: web search is not configured"


def test_intents_are_found_by_keyword() -> None:
    assert detect_intent("search the news").tool == "web_search"  # type: ignore[union-attr]
    assert detect_intent("let me speak to an agent").tool == "transfer_call"  # type: ignore[union-attr]
    assert detect_intent("bye bye").tool == "end_call"  # type: ignore[union-attr]
    assert detect_intent("hello there") is None


def test_every_grammar_word_is_in_the_recognisers_dictionary() -> None:
    grammar = phrase_grammar(
        ["on-call dentist", "billing", "Zyxq desk"], vocabulary=known_words().__contains__
    )
    body = grammar.split("grammar intents;")[1]
    words = {
        w
        for w in body.replace("|", " ")
        .replace("[", " ")
        .replace("]", " ")
        .replace("(", " ")
        .replace(")", " ")
        .replace(";", " ")
        .replace("=", " ")
        .split()
        if not w.startswith("<")
    }
    assert words <= known_words()
    assert "on call dentist" in grammar and "zyxq" not in grammar


def test_a_failed_transfer_is_apologised_for_not_greeted_again() -> None:
    # What the call core asks for when Twilio refused the redirect: no quoted words, and the
    # conversation's tail is empty (the handoff line was the agent's last message).
    items = (
        user("can i talk to a person"),
        FunctionCallItem("f1", "call_1", "transfer_call", '{"target": "operator"}'),
        FunctionCallOutputItem("o1", "call_1", '{"ok": true, "status": "transferring"}'),
        MessageItem("a1", "assistant", [ContentPart("output_audio", transcript="Transferring.")]),
    )
    instructions = (
        "The transfer to operator did not go through. Apologise briefly to the caller and "
        "offer to help another way."
    )
    [speech] = DialoguePolicy().respond(request(*items, instructions=instructions))
    assert speech == Speech(
        "Sorry, the transfer to operator didn't go through. "
        "Is there anything else I can help you with?"
    )


def test_key_presses_pressed_together_are_all_answered_in_one_sentence() -> None:
    presses = [user(to_model_text(d), f"u{i}", typed=True) for i, d in enumerate("2#*")]
    [speech] = DialoguePolicy().respond(request(*presses))
    assert isinstance(speech, Speech)
    assert speech.text.startswith("You pressed 2, pound and star on the keypad. I can ")
    assert ".." not in speech.text


def test_one_key_press_is_named_once_without_a_double_period() -> None:
    [speech] = DialoguePolicy().respond(request(user(to_model_text("1"), typed=True)))
    assert speech == Speech(
        "You pressed 1 on the keypad. I can look up the weather or the news or put you "
        "through to a person."
    )


def test_what_was_heard_is_repeated_with_one_full_stop() -> None:
    [speech] = DialoguePolicy().respond(request(user("my name is ada."), tools=END_ONLY))
    assert speech == Speech("I heard: my name is ada. How can I help?")


def test_asking_for_a_person_without_a_transfer_tool_is_declined() -> None:
    [speech] = DialoguePolicy().respond(request(user("can i talk to a person"), tools=END_ONLY))
    assert speech == Speech(
        "I heard: can i talk to a person. Sorry, I can't put you through to a person on this line."
    )
