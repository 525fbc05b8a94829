"""TODO(scale-out): 3 -> 4 servers under the session workload. Not measured yet.

Seam for the scale-out work being built in parallel (the join of a fourth
server: add-node for its master and its crossed replica, then rebalance). Once
it has landed, this module should:

1. bring up ours-prod on 4 loopback hosts with only the first 3 bootstrapped;
2. start an open-loop `benchmarks.workload.run_load` at the usual rate in the
   background (the generators already count MOVED/ASK/connection errors and
   reload the slot table);
3. run the shipped join on server 4 and time it;
4. report: duration, slots moved and slots/s, request latency p50/p99/p99.9
   and errors during the move (compare with the same rate without a move).

`measure()` is what __main__ will call; the report renders its dict as the
scale-out section. Until then it says plainly that nothing was measured.
"""

from __future__ import annotations


def measure() -> dict:
    return {"status": "not measured", "reason": "waiting for the scale-out issue (join of a 4th server) to land"}
