"""Names, targets, pools, durations and times: what is accepted and what is refused."""

from __future__ import annotations

import pytest

from agent.common.timespec import format_time, parse_duration, parse_time
from provisioning.errors import InputError, InvalidName, InvalidTarget, InvalidTime
from provisioning.identities import bulk_names, check_alg, check_name, parse_pools, parse_targets


@pytest.mark.parametrize("name", ["node-1", "a", "A_b.c:d-e", "x" * 64, "all-nodes", "0"])
def test_valid_names(name: str) -> None:
    assert check_name(name, "agent") == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a/b", "a+b", "a#", "$sys", "sp ace", "é", "a\nb", "a\0"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidName, match="must match"):
        check_name(name, "device")


def test_all_is_reserved_for_agents_only() -> None:
    with pytest.raises(InvalidName, match="task target of its own"):
        check_name("all", "agent")
    assert check_name("all", "operator") == "all"


def test_bulk_names_are_zero_padded() -> None:
    assert bulk_names("s-", 3) == ["s-0001", "s-0002", "s-0003"]
    names = bulk_names("n", 9999)
    assert names[0] == "n0001" and names[-1] == "n9999" and names == sorted(names)
    assert bulk_names("d", 2, start=9999) == ["d9999", "d10000"]  # the same width in every batch
    with pytest.raises(InputError):
        bulk_names("d", 0)


def test_targets() -> None:
    assert parse_targets(["node-1,all", "pool:cams", "node-1"]) == ("node-1", "all", "pool:cams")
    for bad in ["pool:", "pool:a/b", "node/1", "", "a,,b", "#"]:
        with pytest.raises(InvalidTarget):
            parse_targets([bad])


def test_pools() -> None:
    assert parse_pools(["a,b", "a"]) == ("a", "b")
    with pytest.raises(InvalidName):
        parse_pools(["bad pool"])


def test_only_devices_choose_an_algorithm() -> None:
    assert check_alg("device", "hmac-sha256") == "hmac-sha256"
    assert check_alg("agent", None) == "ed25519"
    with pytest.raises(InputError, match="devices only"):
        check_alg("agent", "hmac-sha256")


def test_durations() -> None:
    assert parse_duration("0") == 0
    assert parse_duration("90s") == 90
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("7d") == 7 * 86400
    for bad in ["", "h", "24", "-1h", "1y", "1 h"]:
        with pytest.raises(InvalidTime):
            parse_duration(bad)


def test_times() -> None:
    assert parse_time("2027-01-31T12:00:00Z") == 1801396800.0
    assert parse_time("2027-01-31T13:00:00+01:00") == 1801396800.0
    assert parse_time("1801396800") == 1801396800.0
    assert format_time(1801396800.0) == "2027-01-31T12:00:00Z"
    for bad in ["2027-01-31T12:00:00", "tomorrow", "nan", "-5"]:
        with pytest.raises(InvalidTime):
            parse_time(bad)
