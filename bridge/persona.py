"""Who answers the phone: the persona, and the Realtime session it asks for.

This module holds the persona's typed model and the built-in default. Loading persona files
(YAML, several per directory, chosen by the called number) builds on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.realtime.events import AudioFormat, FunctionTool, SessionConfig, TurnDetection


class TurnDetectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(default=None, ge=0)
    silence_duration_ms: int | None = Field(default=None, ge=0)
    idle_timeout_ms: int | None = Field(default=None, ge=0)
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool = True
    interrupt_response: bool = True

    def to_core(self) -> TurnDetection:
        return TurnDetection(**self.model_dump())


class Persona(BaseModel):
    """One configured agent. Fields mirror what an operator sets in a persona file."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    business_name: str = "our office"
    instructions: str
    greeting: str
    voice: str = "alloy"
    speed: float | None = Field(default=None, ge=0.25, le=1.5)
    language: str | None = None
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    turn_detection: TurnDetectionConfig = Field(default_factory=TurnDetectionConfig)

    def render_instructions(self, caller_number: str = "", now: datetime | None = None) -> str:
        now = now or datetime.now().astimezone()
        return self.instructions.format(
            caller_number=caller_number or "unknown",
            business_name=self.business_name,
            today=now.strftime("%A %d %B %Y"),
            now=now.strftime("%H:%M"),
        )

    def session_config(
        self,
        audio_format: AudioFormat,
        caller_number: str = "",
        tools: tuple[FunctionTool, ...] = (),
    ) -> SessionConfig:
        return SessionConfig(
            instructions=self.render_instructions(caller_number),
            voice=self.voice,
            audio_format=audio_format,
            speed=self.speed,
            transcription_model=self.transcription_model,
            transcription_language=self.language,
            turn_detection=self.turn_detection.to_core(),
            tools=tools,
        )


DEFAULT_PERSONA = Persona(
    name="default",
    business_name="voicebridge",
    instructions=(
        "You are the friendly voice assistant answering the phone for {business_name}. "
        "You are on a phone call: keep every answer short, one or two sentences, in plain "
        "spoken language with no lists or markup. The caller's number is {caller_number}; "
        "today is {today}."
    ),
    greeting="Hello, thanks for calling. How can I help you today?",
)
