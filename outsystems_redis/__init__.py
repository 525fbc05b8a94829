"""outsystems-redis: the pure core (settings, sizing, topology, renderers, the health check's judge)
and the thin Pulumi shell (network, server, observability, session_store)."""
