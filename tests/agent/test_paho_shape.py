"""The paho internals agent/node/link relies on are the ones it was checked against.

`pahoio.BatchingClient` overrides private methods of paho's `Client` and reads its private state;
`pahofast` replaces paho's `Properties` constructor and `MQTTMessageInfo`; `mqtt.MqttLink` sets
`_thread` and calls `_sock_close`. paho gives no promise about any of them, so pyproject.toml pins
paho-mqtt to the minor version they were read in (2.2), and this test fails, naming the installed
version, if one of them changes shape: read the new paho before moving the pin.
"""

from __future__ import annotations

import inspect
import threading
from collections import deque
from importlib.metadata import version

import paho.mqtt.client as paho
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CHECKED = "2.2"
INSTALLED = version("paho-mqtt")
WHY = (
    f"paho-mqtt {INSTALLED} differs from {CHECKED}.x, which agent/node/link/pahoio.py and pahofast.py "
    "were checked against"
)

#: Private methods of paho.Client that pahoio overrides or calls, with their parameters.
METHODS = {
    "_sock_recv": ["self", "bufsize"],
    "_sock_close": ["self"],
    "_packet_read": ["self"],
    "_packet_write": ["self"],
    "_packet_handle": ["self"],
    "_packet_queue": ["self", "command", "packet", "mid", "qos", "info"],
    "_easy_log": ["self", "level", "fmt", "args"],
}
#: Private state of a paho.Client that pahoio and mqtt.py read or write, and its type.
STATE = {
    "_in_packet": dict,
    "_out_packet": deque,
    "_sock": type(None),
    "_sockpairW": type(None),
    "_thread": type(None),
    "_last_bytes_received": float,
}
IN_PACKET_KEYS = {
    "command",
    "have_remaining",
    "remaining_count",
    "remaining_mult",
    "remaining_length",
    "packet",
    "to_process",
    "pos",
}


def test_the_installed_paho_is_the_minor_version_checked() -> None:
    assert INSTALLED.startswith(CHECKED + "."), WHY


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_private_methods_keep_their_parameters(name: str) -> None:
    method = getattr(paho.Client, name, None)
    assert callable(method), f"{WHY}: Client.{name} is gone"
    parameters = [p.name for p in inspect.signature(method).parameters.values()]
    assert parameters[: len(METHODS[name])] == METHODS[name], f"{WHY}: Client.{name}{parameters}"


def test_the_private_state_keeps_its_names_and_types() -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="shape")
    for name, kind in STATE.items():
        assert hasattr(client, name), f"{WHY}: Client.{name} is gone"
        assert isinstance(getattr(client, name), kind), (
            f"{WHY}: Client.{name} is {type(getattr(client, name))}"
        )
    assert set(client._in_packet) == IN_PACKET_KEYS, f"{WHY}: _in_packet keys {sorted(client._in_packet)}"
    assert isinstance(client._msgtime_mutex, type(threading.Lock())), WHY
    assert callable(paho.time_func), WHY


def test_the_decoding_internals_pahofast_replaces_are_there() -> None:
    template = Properties(PacketTypes.PUBLISH)
    assert set(vars(template)) == {"packetType", "types", "names", "properties"}, (
        f"{WHY}: {set(vars(template))}"
    )
    from agent.node.link.pahofast import LazyMessageInfo, SharedTablesProperties

    for module in (_packet, paho):  # paho's own, or ours once an agent in this process installed it
        assert module.Properties in (Properties, SharedTablesProperties), f"{WHY}: {module.__name__}"
    info = paho.MQTTMessageInfo
    original = info.__mro__[1] if info is LazyMessageInfo else info
    slots = getattr(original, "__slots__", None)
    assert tuple(slots or ()) == ("_condition", "_iterpos", "_published", "mid", "rc"), f"{WHY}: {slots}"


def test_pahofast_installs_on_this_paho() -> None:
    from agent.node.link import pahofast

    assert pahofast.install(), f"{WHY}: pahofast refused to install (see its log line)"
