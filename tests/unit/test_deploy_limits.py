"""AWS limits and behaviours the mocks do not enforce: user-data size, and what a password change touches."""

from __future__ import annotations

import base64
import json
import re

import pytest

from outsystems_redis.render.cloud_config import EC2_USER_DATA_LIMIT
from tests.tools import documentation
from tests.unit.program import Program, run_program, user_data
from tests.unit.user_data_shapes import (
    CURRENT,
    INSTANCE,
    PLATFORM_SHAPES,
    SHAPES,
    USER_DATA_BUDGET,
    USER_DATA_TARGET,
    shape,
)


def ec2_size(inputs: dict) -> int:
    """What EC2 counts against its limit: the bytes after base64 decoding (here, the gzip)."""
    return len(base64.b64decode(inputs["userDataBase64"], validate=True))


@pytest.fixture(scope="module")
def programs() -> dict[tuple, Program]:
    return {case: shape(*case) for case in SHAPES}


@pytest.fixture(scope="module")
def sizes(programs: dict[tuple, Program]) -> dict[tuple, dict[str, tuple[int, int]]]:
    """Per shape, per server: (bytes EC2 counts, bytes of the cloud-config as text)."""
    return {
        case: {i.name: (ec2_size(i.inputs), len(user_data(i.inputs).encode())) for i in program.of_type(INSTANCE)}
        for case, program in programs.items()
    }


IAM_ROLE_INLINE_POLICIES_MAX = 10_240  # characters of all of one role's inline policies, whitespace not counted
STACK_NAME_MAX = 100  # outsystems_redis.settings.check_stack_name


def test_every_roles_inline_policies_fit_iam_for_every_shape_and_the_longest_stack_name(programs) -> None:
    """PutRolePolicy refuses a role whose inline policies pass 10,240 characters. With two TLS parameter ARNs per
    server, 100 servers with TLS did (planted: 38,568 counted so). Each occurrence of the stack's name ("prod",
    "dev" here) is counted as if it were 100 characters long."""
    for (stack, servers, platform, tls), program in programs.items():
        per_role: dict[str, int] = {}
        for policy in program.of_type("aws:iam/rolePolicy:RolePolicy"):
            text = json.dumps(json.loads(policy.inputs["policy"]), separators=(",", ":"))
            longest = len(text) + text.count(stack) * (STACK_NAME_MAX - len(stack))
            per_role[policy.inputs["role"]] = per_role.get(policy.inputs["role"], 0) + longest
        assert per_role, "no inline policy found: this test measures nothing"
        over = {role: size for role, size in per_role.items() if size > IAM_ROLE_INLINE_POLICIES_MAX}
        assert not over, f"{servers} servers on {platform}{' with TLS' if tls else ''}: {over}"


@pytest.mark.parametrize("case", SHAPES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2][7:12]}{'-tls' if c[3] else ''}")
def test_every_servers_user_data_fits_ec2s_limit(case: tuple, sizes: dict) -> None:
    per_server = sizes[case]
    assert len(per_server) == case[1]
    over = {name: size for name, (size, _) in per_server.items() if size > EC2_USER_DATA_LIMIT}
    assert not over, f"user data over EC2's {EC2_USER_DATA_LIMIT} bytes: {over}"




def test_the_largest_user_data_stays_within_the_budget(sizes: dict) -> None:
    largest = {case: max(size for size, _ in per_server.values()) for case, per_server in sizes.items()}
    over = {case: size for case, size in largest.items() if size > USER_DATA_BUDGET}
    assert not over, f"user data over the {USER_DATA_BUDGET:,}-byte budget (EC2 refuses {EC2_USER_DATA_LIMIT:,}):" \
        f" {over}"


def test_the_largest_user_data_is_at_most_12_kb(sizes: dict) -> None:
    largest = max(size for per_server in sizes.values() for size, _ in per_server.values())
    assert largest <= USER_DATA_TARGET, f"the largest user data is {largest:,} bytes, over {USER_DATA_TARGET:,}"


def test_the_limit_is_the_one_ec2_enforces_and_the_text_alone_would_break_it(sizes: dict) -> None:
    assert EC2_USER_DATA_LIMIT == 16384
    # Uncompressed, a joiner with TLS is far over the limit: the check above guards something real.
    largest_text = max(text for per_server in sizes.values() for _, text in per_server.values())
    assert largest_text > EC2_USER_DATA_LIMIT


def test_a_joiners_user_data_does_not_grow_with_the_final_server_count(sizes: dict) -> None:
    """Server 4's user data is the same whether the cluster ends at 4, 6 or 100 servers."""
    for platform, tls in PLATFORM_SHAPES:
        fourth = {sizes[("prod", n, platform, tls)]["outsystems-redis-server-4-instance"] for n in (4, 6)}
        assert len(fourth) == 1
    fourth = {sizes[("prod", n, CURRENT, True)]["outsystems-redis-server-4-instance"] for n in (4, 6, 100)}
    assert len(fourth) == 1


def test_no_shapes_largest_user_data_grows_past_four_servers(sizes: dict) -> None:
    """Why one 100-server program (7.0 with TLS) is enough: beyond 4 servers, no shape's largest grows.

    (Redis 5.0's server 1 is the largest of all now, 15,301 of 16,384 bytes.)
    """
    for platform, tls in PLATFORM_SHAPES:
        largest = {n: max(size for size, _ in sizes[("prod", n, platform, tls)].values()) for n in (4, 6)}
        assert largest[4] == largest[6], (platform, tls, largest)


# --- password changes ---------------------------------------------------------------------------

A = "FirstPasswordFor0Sessions"
B = "SecondPasswordFor1Sessions"


def with_password(password: str, preview: bool = False, **keys) -> Program:
    config = {"outsystems-redis:redisPassword": password, **{f"outsystems-redis:{k}": v for k, v in keys.items()}}
    return run_program("prod", config, secret_keys=("outsystems-redis:redisPassword",), preview=preview)


def test_a_password_change_touches_no_server() -> None:
    """Only the parameter, the direct check's environment and the outputs change: no server is replaced. (The check
    through CloudWatch carries no password: tests/unit/test_program.py.)"""
    via = "direct"
    before, after = with_password(A, healthCheckVia=via), with_password(B, healthCheckVia=via)
    old = {r.urn: r for r in before.resources}
    new = {r.urn: r for r in after.resources}
    assert old.keys() == new.keys()
    changed = {urn.rsplit("::", 1)[1] for urn in old if old[urn].inputs != new[urn].inputs}
    assert changed == {"outsystems-redis-password", "outsystems-redis-health-check"}
    for urn, r in old.items():
        if r.type == INSTANCE:
            assert new[urn].inputs == r.inputs and set(new[urn].dependencies) == set(r.dependencies)
    assert after.exports["connectionString"].endswith(f"password={B}")


def test_the_outputs_wait_for_the_servers_to_accept_the_password() -> None:
    """The connection string is known only once the post-deploy check has run, and the direct check waits
    (--wait) with the new password: a preview of a password change shows the outputs as unknown."""
    program = with_password(A, preview=True, healthCheckVia="direct")
    (check,) = program.of_type("command:local:Command")
    assert check.inputs["environment"]["REDIS_PASSWORD"] == A and "--wait" in check.inputs["create"]
    assert {"connectionString", "hsconfSnippet"} <= program.unknown_exports
    assert "serverPrivateIps" not in program.unknown_exports
    # Without the check nothing can gate them: the outputs are known at once (the README says so).
    unchecked = with_password(A, preview=True, healthCheck=False)
    assert "connectionString" not in unchecked.unknown_exports
    assert unchecked.exports["connectionString"].endswith(f"password={A}")


def test_the_readmes_user_data_figures_are_the_measured_ones(sizes: dict) -> None:
    """The docs quote the largest user data; it must be what the program renders now (it went stale before)."""
    largest = max(size for per_server in sizes.values() for size, _ in per_server.values())
    readme = documentation()
    quoted = [int(n.replace(",", "")) for n in re.findall(r"gzipped it is at most ([\d,]+) bytes", readme)]
    quoted += [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) of EC2's 16,384 bytes", readme)]
    assert quoted, "the README quotes no user-data size any more: update this test"
    assert set(quoted) == {largest}, f"README says {quoted}; the largest user data is {largest:,} bytes"
