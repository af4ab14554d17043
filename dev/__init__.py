"""Local stand-ins for the services kafka-backup talks to (used by tests, the demo and CI)."""
