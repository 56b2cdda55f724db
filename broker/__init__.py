"""The embedded MQTT broker: amqtt with fleet authentication, ACL, TLS and durable delivery.

Public surface::

    from broker import EmbeddedBroker, BrokerSettings, load_settings, settings_from

    async with EmbeddedBroker(settings_from({"listeners.tcp.port": 0, "auth.allow_anonymous": True})) as b:
        ...  # 127.0.0.1:b.port

    with EmbeddedBroker(settings).start_in_thread() as b:
        ...

`edge-broker --help` (broker/cli.py) runs it as a program; broker/README.md explains the
configuration, the amqtt faults fixed here and when to move to Mosquitto or a cluster.
"""

from .config import BrokerSettings, ListenerSettings, load_settings, settings_from
from .credentials import AclTable, PasswordFile, hash_password
from .embedded import BrokerThread, EmbeddedBroker
from .errors import BrokerError, ConfigError, CredentialsError, StartError, StoreError

__all__ = [
    "AclTable",
    "BrokerError",
    "BrokerSettings",
    "BrokerThread",
    "ConfigError",
    "CredentialsError",
    "EmbeddedBroker",
    "ListenerSettings",
    "PasswordFile",
    "StartError",
    "StoreError",
    "hash_password",
    "load_settings",
    "settings_from",
]
