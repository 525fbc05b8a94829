"""outsystems-redis: the pure core (settings, sizing, topology, renderers, health)
and the thin Pulumi shell (network, server, environment)."""
