"""The local runtime: Azurite, a local Functions host, the Durable Task engine and friends."""
