"""A joiner that gossip did not bring to every member: the shipped cluster-join introduces them itself.

On a busy cluster a member's handshake with a new node can time out, and gossip may not bring the node
back to it before the join's wait runs out (a fresh-clone run of the suite on 6 workers: "127.x.4.2:7000
has not met 127.x.4.4:7000 in 120s"). Here one member is made to miss the joiner for sure: while the join
starts it forgets the joiner's nodes again and again (CLUSTER FORGET also bars them from its gossip for
60 s). cluster-join then meets them from that member itself (CLUSTER MEET) and the join completes well
inside a wait shorter than that bar. Planted (no CLUSTER MEET in cluster-join.sh): the join fails.
"""

from __future__ import annotations

import threading
import time

import redis

from tests.integration.loopbacks import loopback_factory  # noqa: F401  (fixture)

WAIT_SECONDS = 40  # shorter than Redis's 60 s FORGET bar: only a direct meeting gets the joiner known in time
FORGETTING_SECONDS = 6


def test_a_member_that_missed_the_joiner_is_introduced_by_the_join(loopback_factory):  # noqa: F811
    lo = loopback_factory("5.0", 3)
    lo.start()
    lo.bootstrap()
    lo.add_servers(1, join=False)
    joiner_ids = {lo.client(p).execute_command("CLUSTER", "MYID") for p in lo.topology.servers[3].processes}
    member = lo.client(lo.topology.servers[1].processes[0])
    forgot: list[str] = []
    first_forgot: list[float] = []
    stop = threading.Event()

    def forget() -> None:
        # Forget the joiner's nodes whenever this member learns them, from the first time it does (however
        # long gossip takes on a busy machine) for a few seconds more.
        deadline = time.monotonic() + WAIT_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            if forgot:
                deadline = min(deadline, first_forgot[0] + FORGETTING_SECONDS)
            known = str(member.execute_command("CLUSTER", "NODES"))
            for node_id in joiner_ids:
                if node_id in known:
                    try:
                        member.execute_command("CLUSTER", "FORGET", node_id)
                        first_forgot.append(time.monotonic())
                        forgot.append(node_id)
                    except redis.ResponseError:
                        pass  # it moved on meanwhile
            time.sleep(0.05)

    forgetting = threading.Thread(target=forget, daemon=True)
    forgetting.start()
    try:
        lo.join_all([3], WAIT_SECONDS)  # raises with the join's output when it fails
    finally:
        stop.set()
        forgetting.join(timeout=10)
    assert forgot, "the member never learned the joiner while forgetting: this run proves nothing"
    for p in lo.processes:
        view = str(lo.client(p).execute_command("CLUSTER", "NODES"))
        assert all(node_id in view for node_id in joiner_ids), f"{p.address} does not know the joiner"
