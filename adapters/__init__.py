"""Ports and adapters: everything that talks to the outside world lives below this package."""
