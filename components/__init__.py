"""Former name of outsystems_redis (until 0.3.x): an alias with a FutureWarning (outsystems_redis/_former.py)."""

from outsystems_redis import _former

_former.install(__name__)
