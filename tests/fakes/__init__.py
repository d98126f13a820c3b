"""Fakes of the services the bridge talks to, for its tests."""
