"""Sizing Ray workers to a cluster and recognising loopback addresses (no Ray started)."""

from __future__ import annotations

import pytest

from quantfid.executors.cluster import Resources, is_loopback


def test_workers_per_node_follow_every_reserved_resource():
    node = {"CPU": 16.0, "GPU": 2.0, "memory": 64 * 2.0**30}
    assert Resources(1.0).fits(node) == 16
    assert Resources(2.0, 1.0).fits(node) == 2
    assert Resources(0.5, 0.0, 24 * 2**30).fits(node) == 2
    assert Resources(1.0, 1.0).fits({"CPU": 8.0}) == 0  # no GPU on that node
    assert Resources(0.0).fits(node) == -1  # reserves nothing: unbounded
    assert Resources(1.0, 0.0, 2**30).options() == {"num_cpus": 1.0, "num_gpus": 0.0,
                                                    "memory": 2**30}


@pytest.mark.parametrize(("address", "loop"), [
    ("127.0.0.1:6379", True), ("localhost:6379", True), ("[::1]:6379", True),
    ("127.0.0.5:1", True), ("10.0.0.7:6379", False), ("head.cluster:6379", False)])
def test_loopback_addresses(address, loop):
    assert is_loopback(address) is loop
