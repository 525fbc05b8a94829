"""Renderers: pure text out (cloud-config, redis.conf, systemd drop-ins, scripts)."""
