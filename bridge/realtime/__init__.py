"""The Realtime side: one internal event vocabulary, the GA/beta dialects, the upstream socket."""
