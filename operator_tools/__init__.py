"""Former name of outsystems_redis.tools (until 0.3.x): an alias with a FutureWarning (see _former.py)."""

from outsystems_redis import _former

_former.install(__name__)
