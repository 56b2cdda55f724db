"""The device's MQTT connection (umqtt.simple): connect, subscribe to its replies, publish, wait.

One connection, used from the main loop only (umqtt.simple is not thread-safe and has no
background thread: messages arrive while `wait_reply` or `idle` polls). The subscription to
`{p}/replies/{KID}/#` is made on every connect, before anything is published, so no reply can
come before it; the session is clean, so a reply sent while the device is away is lost (the
agent's result on `{p}/results/...` is still there for dashboards).
"""

import binascii
import os
import select
import time

from umqtt.simple import MQTTClient, MQTTException

POLL_MS = 100
IO_TIMEOUT_S = 10  # a broker that stops answering a CONNECT, SUBSCRIBE or PUBLISH mid-packet


class LinkError(OSError):
    """The broker cannot be reached, refused the login or a subscription, or TLS failed."""


def _der(path):
    """The DER bytes of a PEM (or DER) file: not every port's mbedTLS parses PEM (the unix
    port's refuses it), every one parses DER. The first PEM block only (one certificate or key)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"-----BEGIN"):
        return data
    lines = data.split(b"\n")
    end = next(i for i, line in enumerate(lines) if line.startswith(b"-----END"))
    return binascii.a2b_base64(b"".join(lines[1:end]))


class _Tls:
    """What umqtt's `ssl` argument needs (`wrap_socket`), keeping the TCP socket under the TLS one:
    umqtt.simple's reads clear the socket's timeout, and only the TCP socket can set it again."""

    def __init__(self, context):
        self.context = context
        self.raw = None

    def wrap_socket(self, sock, server_hostname=None):
        self.raw = sock
        return self.context.wrap_socket(sock, server_hostname=server_hostname)


def _tls_context(settings, base):
    import ssl  # only where TLS is used: the unix port and boards built with mbedTLS have it

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(_der(base + settings.CERT_FILE), _der(base + settings.KEY_FILE))
    context.load_verify_locations(cadata=_der(base + settings.CA_FILE))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Link:
    """The broker connection of one device; `base` is prepended to the TLS file names."""

    def __init__(self, settings, base="", keepalive_s=60):
        self.settings = settings
        self.base = base
        self.keepalive_s = keepalive_s
        self.replies = f"{settings.PREFIX}/replies/{settings.KID}/"
        self.client = None
        self.raw = None  # the TCP socket (under TLS, if any): its timeout bounds every read
        self.poller = None
        self.inbox = []  # (topic, payload) of replies not yet claimed
        self.last_io = time.ticks_ms()

    def connect(self):
        s = self.settings
        client_id = f"{s.NAME}-{binascii.hexlify(os.urandom(3)).decode()}"  # never another identity's name
        try:
            tls = _Tls(_tls_context(s, self.base)) if s.USE_TLS else None
            self.client = MQTTClient(client_id, s.HOST, s.port, s.USERNAME, s.PASSWORD, self.keepalive_s, tls)
            self.client.set_callback(self._received)
            self.client.connect(timeout=IO_TIMEOUT_S)
            self.raw = tls.raw if tls else self.client.sock
            self.client.subscribe(self.replies + "#", qos=1)
            self.raw.settimeout(IO_TIMEOUT_S)
            self.poller = select.poll()
            self.poller.register(self.client.sock, select.POLLIN)
        except MQTTException as exc:
            self.close()
            raise LinkError(f"the broker refused: {_refusal(exc)}") from None
        except (OSError, ValueError, AssertionError, StopIteration) as exc:  # socket, TLS, files
            self.close()
            raise LinkError(f"cannot connect to {s.HOST}:{s.port}: {exc!r}") from None
        self.last_io = time.ticks_ms()

    def _received(self, topic, payload):
        self.inbox.append((str(topic, "utf-8"), payload))
        del self.inbox[:-4]  # keep the newest few: only this device's replies can arrive

    def publish(self, topic, payload):
        """QoS 1: returns once the broker acknowledged it."""
        try:
            self.client.publish(topic, payload, qos=1)
            self.raw.settimeout(IO_TIMEOUT_S)
        except (OSError, AssertionError) as exc:
            raise LinkError(f"publish failed: {exc!r}") from None
        self.last_io = time.ticks_ms()

    def _poll(self, ms):
        """Wait up to `ms` for a packet and handle it; PINGREQ when the link has been quiet."""
        try:
            if self.poller.poll(ms):
                self.client.wait_msg()
                self.raw.settimeout(IO_TIMEOUT_S)
            if time.ticks_diff(time.ticks_ms(), self.last_io) > self.keepalive_s * 500:
                self.client.ping()
                self.last_io = time.ticks_ms()
        except (OSError, AssertionError) as exc:
            raise LinkError(f"connection lost: {exc!r}") from None

    def wait_reply(self, task_id, timeout_s):
        """The payload published on `{p}/replies/{KID}/{task_id}`, or None after `timeout_s`."""
        topic = self.replies + task_id
        deadline = time.ticks_add(time.ticks_ms(), int(timeout_s * 1000))
        while True:
            for i, (got, payload) in enumerate(self.inbox):
                if got == topic:
                    del self.inbox[i]
                    return payload
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return None
            self._poll(POLL_MS)

    def idle(self, seconds):
        """Keep the connection alive (PINGREQ) for `seconds`, dropping stray replies."""
        deadline = time.ticks_add(time.ticks_ms(), int(seconds * 1000))
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            self._poll(POLL_MS)
            self.inbox.clear()

    def close(self):
        if self.client is not None and self.client.sock is not None:
            try:  # noqa: SIM105 (MicroPython has no contextlib)
                self.client.disconnect()
            except OSError:
                pass
        self.client = None


_CONNACK = {
    1: "protocol version",
    2: "client id",
    3: "server unavailable",
    4: "bad username or password",
    5: "not authorised",
}


def _refusal(exc):
    code = exc.args[0] if exc.args else None
    if code == 0x80:
        return "subscription to its replies topic refused (ACL)"
    return "{} ({})".format(_CONNACK.get(code, "error"), code)
