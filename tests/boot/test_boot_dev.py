"""Dev (one server): its first boot and the post-deploy check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot import machines as m
from tests.boot.support import (
    Deployment,
    assert_first_boot,
    booted,
    post_deploy_check,
    verdict,
)


@pytest.fixture(scope="module")
def dev(root: Path) -> Iterator[tuple[Deployment, m.Fleet]]:
    deployment = Deployment.of("dev")
    with booted(root, deployment) as fleet:
        yield deployment, fleet


def test_dev_server_first_boot(dev: tuple[Deployment, m.Fleet]) -> None:
    deployment, fleet = dev
    assert len(fleet.servers) == 1
    server = fleet.servers[0]
    if deployment.instances[0].inputs.get("userDataBase64"):
        # What EC2 hands cloud-init is the gzip itself: this boot proves cloud-init unpacks it.
        assert server.user_data[:2] == b"\x1f\x8b", "userDataBase64 is not gzip-compressed"
    assert_first_boot(server)


def test_dev_post_deploy_check(dev: tuple[Deployment, m.Fleet]) -> None:
    deployment, fleet = dev
    print(verdict(post_deploy_check(fleet, deployment)))
