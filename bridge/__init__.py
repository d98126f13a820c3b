"""voicebridge: a Twilio Media Streams ↔ Realtime speech model bridge."""

__version__ = "0.1.0"
