"""paho's per-packet objects made cheap to build: MQTT 5 `Properties` and `MQTTMessageInfo`.

Why: paho 2.x builds a `Properties` object for every PUBLISH and PUBACK it decodes on MQTT 5 (two
per task here: the task in, the PUBACK of its result), and its constructor rebuilds three lookup
tables each time (27 names, 27 ids typed through `list.index`), while `unpack` starts with a
`clear()` that makes 27 `str.replace` and `hasattr` calls. Measured under the agent benchmark,
that is about 8 % of the agent's CPU per task. `install()` points paho's decoder and client at a
subclass whose constructor shares one copy of the tables (paho only reads them) and whose
`clear()` deletes only the properties that are set. Everything else is paho's own code, so
decoding, validation and errors do not change (tests compare both classes on every property).

paho also gives every message it receives or publishes an `MQTTMessageInfo`, and each builds a
`threading.Condition` (about 2 us: a lock, a list, bound methods), used only by a thread that waits
in `wait_for_publish` or asks `is_published`. The agent never waits on received messages and
seldom on published ones. `LazyMessageInfo` makes that condition the first time one is asked for;
marking a message published without one sets the flag under a module lock, the same lock under
which a waiter makes it, so a waiter either finds the flag set or is notified.

`install()` changes module globals of paho's internal `_packet` and `client` modules, for every
client of the process; with a paho whose internals differ it does nothing and says so in the log.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from paho.mqtt import client as paho_client
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

_TEMPLATE = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_SHARED = {name: getattr(_TEMPLATE, name, None) for name in ("types", "names", "properties")}
#: Attribute names of the properties (paho stores "Topic Alias" as `TopicAlias`).
_ATTRIBUTES = frozenset(name.replace(" ", "") for name in _SHARED["names"] or ())


class SharedTablesProperties(Properties):
    """`Properties` whose constructor does not rebuild paho's tables (see the module's docstring)."""

    def __init__(self, packetType: int) -> None:  # paho's parameter name
        attributes = self.__dict__
        attributes["packetType"] = packetType
        attributes.update(_SHARED)

    def clear(self) -> None:
        for name in _ATTRIBUTES.intersection(self.__dict__):
            delattr(self, name)


_INFO_SLOTS = ("_condition", "_iterpos", "_published", "mid", "rc")
_CONDITION_SLOT: Any = vars(paho_client.MQTTMessageInfo).get("_condition")
_MAKING = threading.Lock()  # a condition is made, or a message without one marked published


class LazyMessageInfo(paho_client.MQTTMessageInfo):
    """`MQTTMessageInfo` whose condition is made on first use (see the module's docstring)."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:  # paho's, but for the condition
        self.mid = mid
        self._published = False
        _CONDITION_SLOT.__set__(self, None)
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        condition: threading.Condition | None = _CONDITION_SLOT.__get__(self)
        if condition is None:
            with _MAKING:
                condition = _CONDITION_SLOT.__get__(self)
                if condition is None:
                    condition = threading.Condition()
                    _CONDITION_SLOT.__set__(self, condition)
        return condition

    def _set_as_published(self) -> None:
        condition: threading.Condition | None = _CONDITION_SLOT.__get__(self)
        if condition is None:
            with _MAKING:
                condition = _CONDITION_SLOT.__get__(self)
                if condition is None:  # nobody waits yet; one who comes finds the flag set
                    self._published = True
                    return
        with condition:
            self._published = True
            condition.notify()


def _compatible() -> bool:
    """The internals this relies on are there (paho 2.x as released)."""
    return (
        all(isinstance(_SHARED[name], (list, dict)) for name in _SHARED)
        and bool(_ATTRIBUTES)
        and set(vars(_TEMPLATE)) == {"packetType", *_SHARED}
    )


def install() -> bool:
    """Make paho decode with `SharedTablesProperties`; True if it does (idempotent)."""
    try:
        from paho.mqtt import _packet as decoder
    except ImportError:
        return False
    modules: list[Any] = [m for m in (decoder, paho_client) if getattr(m, "Properties", None) is not None]
    if not _compatible() or len(modules) != 2:
        log.info("paho's Properties internals differ from 2.x: its own constructor stays in use")
        return False
    for module in modules:
        if module.Properties is Properties:
            module.Properties = SharedTablesProperties
    info = paho_client.MQTTMessageInfo
    if info is not LazyMessageInfo:
        if _CONDITION_SLOT is not None and getattr(info, "__slots__", None) == _INFO_SLOTS:
            paho_client.MQTTMessageInfo = LazyMessageInfo  # type: ignore[misc]
        else:
            log.info("paho's MQTTMessageInfo differs from 2.x: its own stays in use")
    return True
