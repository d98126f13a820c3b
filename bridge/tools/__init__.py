"""Tools the agent calls while talking, and call control (transfer, hang-up, DTMF)."""
