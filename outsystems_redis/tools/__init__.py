"""What runs on an operator's machine: the health check, the loopback rehearsal, migration, maintenance, restore.

These tools may use the core in outsystems_redis/ (same topology, same rendered files); the core never imports them.
"""
