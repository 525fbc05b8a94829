"""The restore tool's own judgement: snapshot sets, slots, versions, TTLs; errors that name the argument."""

from __future__ import annotations

import pytest

from outsystems_redis.monitoring import backup_key, backup_manifest_key
from outsystems_redis.tools import backup
from outsystems_redis.tools.backup import (
    BackupError,
    Snapshot,
    check_versions,
    coverage,
    group_sets,
    parse_slots,
    restore_ttl,
)

ONE, TWO = "AROAEXAMPLEROLEID:i-0aaaaaaaaaaaaaaaa", "AROAEXAMPLEROLEID:i-0bbbbbbbbbbbbbbbb"


def test_snapshot_sets_group_by_taken_at_and_need_their_manifest():
    t1, t2 = "20261126T200000Z", "20261126T210000Z"
    objects = [(backup_key(ONE, "prod-1", t1, 7000), 10), (backup_manifest_key(ONE, "prod-1", t1, 7000), 1),
               (backup_key(TWO, "prod-2", t1, 7001), 20),  # its manifest never arrived: incomplete
               (backup_key(ONE, "prod-1", t2, 7000), 30), (backup_manifest_key(ONE, "prod-1", t2, 7000), 1),
               ("snapshots/notes.txt", 1), ("tools/health.py", 1)]
    sets = group_sets(objects)
    assert list(sets) == [t1, t2]
    assert [s.name for s in sets[t1].snapshots] == ["prod-1:7000", "prod-2:7001"]
    assert [(s.name, s.writer) for s in sets[t1].complete_snapshots] == [("prod-1:7000", ONE)]
    assert sets[t2].complete_snapshots[0].rdb_size == 30


def test_snapshots_from_before_writer_prefixes_still_list_and_restore():
    """Uploaded by the previous version (snapshots/<server>/<taken at>/<port>), kept for backupRetentionDays."""
    t = "20261126T200000Z"
    sets = group_sets([(f"snapshots/prod-1/{t}/7000.rdb", 10), (f"snapshots/prod-1/{t}/7000.json", 1)])
    assert [(s.name, s.writer, s.complete) for s in sets[t].snapshots] == [("prod-1:7000", "", True)]
    # A writer's key without the server's name is neither form (its ':' is never in a server's name).
    assert backup.parse_key(f"snapshots/{ONE}/{t}/7000.rdb") is None


def test_a_server_name_uploaded_by_two_instances_is_named():
    """A server can write only under its own instance's prefix, but it names itself: another instance's
    snapshot under prod-1's name, in prod-1's hour, makes the set untrustworthy."""
    t = "20261126T200000Z"
    objects = [(backup_key(ONE, "prod-1", t, 7000), 10), (backup_manifest_key(ONE, "prod-1", t, 7000), 1),
               (backup_key(TWO, "prod-2", t, 7000), 10), (backup_manifest_key(TWO, "prod-2", t, 7000), 1)]
    assert backup.claimed_twice(group_sets(objects)[t].complete_snapshots) == {}
    assert backup.two_names(group_sets(objects)[t].complete_snapshots) == {}
    objects += [(backup_key(TWO, "prod-1", t, 7001), 10), (backup_manifest_key(TWO, "prod-1", t, 7001), 1)]
    assert backup.claimed_twice(group_sets(objects)[t].complete_snapshots) == {"prod-1": [ONE, TWO]}
    # One writer under two names is not both servers, whether or not the operator trusts it.
    assert backup.two_names(group_sets(objects)[t].complete_snapshots) == {TWO: ["prod-1", "prod-2"]}
    # A snapshot from before writer prefixes is named as --ignore-writer takes it.
    legacy = group_sets([*objects, (f"snapshots/prod-2/{t}/7001.rdb", 1), (f"snapshots/prod-2/{t}/7001.json", 1)])
    assert backup.claimed_twice(legacy[t].complete_snapshots)["prod-2"] == [TWO, backup.LEGACY]


def test_a_writer_must_be_the_instance_of_the_server_it_names():
    """The restore asks EC2 (`instances`: tags by instance id) whose each writer is: a server of this project and
    stack, with the name it uploaded under."""
    t = "20261126T200000Z"
    mine = {"Name": "prod-1", "Project": "outsystems-redis", "Stack": "prod"}
    one, two = Snapshot("prod-1", 7000, t, ONE), Snapshot("prod-1", 7001, t, TWO)
    legacy = Snapshot("prod-9", 7000, t)  # from before writer prefixes: nothing to ask
    assert backup.unverified([one, legacy], {"i-0aaaaaaaaaaaaaaaa": mine}, "prod", set()) == []
    assert backup.unverified([one], {"i-0aaaaaaaaaaaaaaaa": mine}, None, set()) == []  # --bucket: no stack known
    # Another server of the stack, uploading in prod-1's name.
    (wrong,) = backup.unverified([two], {"i-0bbbbbbbbbbbbbbbb": {**mine, "Name": "prod-2"}}, "prod", set())
    assert wrong == (f"prod-1's snapshots were uploaded by {TWO}, whose instance's tags differ (Name 'prod-2', not "
                     f"'prod-1'): leave it out with --ignore-writer {TWO}")
    # Another stack's server, another project's instance (each tag named), one EC2 does not know (terminated
    # over an hour ago, or never ours: only then is --trust-writer offered), every problem at once.
    (stack,) = backup.unverified([one], {"i-0aaaaaaaaaaaaaaaa": {**mine, "Stack": "dev"}}, "prod", set())
    assert "(Stack 'dev', not 'prod')" in stack and "--trust-writer" not in stack
    (project,) = backup.unverified([one], {"i-0aaaaaaaaaaaaaaaa": {**mine, "Project": "other"}}, None, set())
    assert "(Project 'other', not 'outsystems-redis')" in project
    gone = backup.unverified([one, Snapshot("prod-1", 7001, t, ONE), two], {}, "prod", set())  # once per writer
    assert len(gone) == 2 and all("an instance EC2 does not know" in g and "--trust-writer" in g for g in gone)
    assert backup.unverified([one], {}, "prod", {ONE}) == []  # --trust-writer: a server replaced since


def test_slots_and_coverage():
    assert parse_slots("0-2 5") == {0, 1, 2, 5}
    with pytest.raises(BackupError, match="16384"):
        parse_slots("0-16384")
    a = Snapshot("s1", 7000, "t", manifest={"cluster": True, "slots": "0-8191"})
    b = Snapshot("s2", 7000, "t", manifest={"cluster": True, "slots": "8192-16383"})
    c = Snapshot("s3", 7001, "t", manifest={"cluster": True, "slots": "100"})
    assert coverage([a, b]) == (16384, [])
    assert coverage([a, c]) == (8192, [(100, "s1:7000", "s3:7001")])


def test_ttls_expired_keys_are_skipped():
    assert restore_ttl(-1) == 0  # no expiry
    assert restore_ttl(-2) is None  # expired or gone
    assert restore_ttl(0) is None
    assert restore_ttl(1234) == 1234
    assert restore_ttl(1234, read_at_ms=1_700_000_000_000) == 1_700_000_001_234  # ABSTTL: read time + PTTL
    assert restore_ttl(-1, read_at_ms=1_700_000_000_000) == 0


def test_versions_the_local_redis_server_must_fit_between():
    check_versions("7.0.15", ["5.0.7"], "7.0.15")
    check_versions("5.0.7", ["5.0.7"], "7.0.15")
    with pytest.raises(BackupError, match="--redis-server.*5.0.7.*7.0.15"):
        check_versions("5.0.7", ["7.0.15"], "7.0.15")  # cannot load a 7.0 RDB
    with pytest.raises(BackupError, match="--redis-server.*target runs Redis 5.0"):
        check_versions("7.0.15", ["5.0.7"], "5.0.7")  # its DUMP payloads do not RESTORE into 5.0


@pytest.mark.parametrize("argv,names", [
    (["restore", "--bucket", "b", "--taken-at", "x", "--target", "h:1", "--redis-server", "/nonexistent"],
     "--redis-server"),
    (["list"], "--bucket"),
])
def test_errors_name_the_argument(argv, names, capsys):
    assert backup.main(argv) == 2
    assert names in capsys.readouterr().err


def test_a_bad_target_is_named():
    with pytest.raises(BackupError, match="--target 'nohost'"):
        backup.parse_target("nohost")
    assert backup.parse_target("10.0.1.10:7000") == ("10.0.1.10", 7000)


def test_only_keys_of_the_slots_a_master_held_are_restored():
    from redis.crc import key_slot

    held = backup._in_slots({key_slot(b"{a}x")})
    assert held(b"{a}y") and not held(b"{b}y")
    assert backup._in_slots(None)(b"anything")  # a single server's snapshot: every key
