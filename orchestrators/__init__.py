"""Durable orchestrators (deterministic, no I/O) and their activities."""
