"""MQTT 3.1.1 behaviour, each test run against the embedded broker and against a real Mosquitto.

Running the same test on Mosquitto proves that it checks MQTT, not our implementation. Where
the standard lets brokers differ (duplicate copies for overlapping subscriptions, SUBACK 0x80
versus silent filtering under an ACL) the test asserts what both must do and, for the
embedded broker, the stricter choice it makes. Negative checks ("nothing else arrived") use a
marker message published afterwards, never a sleep.
"""

from __future__ import annotations

import time

from tests.broker.conftest import USERS, ClientFactory, RawFactory, deliver_unacknowledged
from tests.support.brokers import RunningBroker
from tests.support.mqtt import CONNACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, connect_packet

SUBACK_FAILURE = 0x80


def test_retained_message_set_replaced_and_cleared(mqtt_broker: RunningBroker, client: ClientFactory) -> None:
    pub = client("pub")
    pub.publish("test/ret", b"one", qos=1, retain=True)
    pub.publish("test/ret", b"two", qos=1, retain=True)
    first = client("first")
    first.subscribe("test/ret", 1)
    [message] = first.expect(1)
    assert (message.payload, message.retain, message.qos) == (b"two", True, 1)

    pub.publish("test/ret", b"", qos=1, retain=True)  # clears it [MQTT-3.3.1-10]
    [cleared] = first.expect(1)
    assert cleared.payload == b"" and not cleared.retain  # a live copy to a subscriber: retain 0

    later = client("later")
    later.subscribe("test/ret", 1)
    pub.publish("test/ret", b"live", qos=1)
    [only] = later.expect(1)
    assert (only.payload, only.retain) == (b"live", False)


def test_offline_messages_are_queued_for_a_persistent_session(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    sub = client("queue-sub", clean=False)
    sub.subscribe("test/q/#", 1)
    sub.disconnect()

    pub = client("queue-pub")
    for i in range(5):
        pub.publish(f"test/q/{i}", b"%d" % i, qos=1)
    pub.publish("test/q/retained", b"r", qos=1, retain=True)
    pub.publish("test/q/qos0", b"not queued", qos=0)
    # A broker handles one connection's packets in order: once this QoS 1 publish is acknowledged,
    # the QoS 0 one before it has been routed, before the subscriber is back.
    pub.publish("test/barrier", b"", qos=1)

    back = client("queue-sub", clean=False, connect=False)
    assert back.connect() is True  # session present
    got = back.expect(6)
    assert [m.topic for m in got] == [*(f"test/q/{i}" for i in range(5)), "test/q/retained"]
    assert all(m.qos == 1 for m in got)
    assert not any(m.retain for m in got)  # queued for an existing subscription: retain 0 [MQTT-3.3.1-9]
    pub.publish("test/q/end", b"", qos=1)
    assert [m.topic for m in back.expect_until("test/q/end")] == ["test/q/end"]  # QoS 0 was not queued


def test_unacknowledged_qos1_is_redelivered_with_dup_after_reconnect(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    sub = deliver_unacknowledged(client, "redeliver-1", "test/r1", b"m1")
    sub.drop()  # never acknowledged

    again = client("redeliver-1", clean=False, connect=False)
    assert again.connect() is True
    [redelivered] = again.expect(1)
    assert (redelivered.payload, redelivered.qos, redelivered.dup) == (b"m1", 1, True)


def test_unacknowledged_qos2_is_redelivered_after_reconnect(client: ClientFactory, raw: RawFactory) -> None:
    sub = raw("redeliver-2", clean=False)
    assert sub.subscribe(1, [("test/r2", 2)]) == [2]
    client("pub").publish("test/r2", b"m2", qos=2)
    sent = sub.receive_kind(PUBLISH)
    assert (sent.qos, sent.dup, sent.payload) == (2, False, b"m2")
    sub.close()  # no PUBREC: the PUBLISH itself comes again, DUP set, same packet id

    second = raw("redeliver-2", clean=False)
    again = second.receive_kind(PUBLISH)
    assert (again.dup, again.packet_id, again.payload) == (True, sent.packet_id, b"m2")
    second.ack(PUBREC, again.packet_id)
    assert second.receive_kind(PUBREL).packet_id == again.packet_id
    second.close()  # no PUBCOMP: the PUBREL comes again

    third = raw("redeliver-2", clean=False)
    assert third.receive_kind(PUBREL).packet_id == again.packet_id
    third.ack(PUBCOMP, again.packet_id)
    third.disconnect()


def test_overlapping_subscriptions_deliver_at_the_highest_qos(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    sub = client("overlap")
    assert sub.subscribe_many([("test/o/#", 0), ("test/o/+", 2)]) == [0, 2]
    pub = client("pub")
    pub.publish("test/o/x", b"x", qos=2)
    pub.publish("test/o/end", b"", qos=2)
    copies = [m for m in sub.expect_until("test/o/end") if m.topic == "test/o/x"]
    assert copies and all(m.payload == b"x" for m in copies)
    assert max(m.qos for m in copies) == 2  # [MQTT-3.3.5-1]
    if mqtt_broker.kind == "embedded":
        assert len(copies) == 1  # one copy per client (the standard allows more; Mosquitto sends two)


def test_delivery_qos_is_the_lower_of_publish_and_subscription(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    sub = client("minqos")
    assert sub.subscribe_many([("test/qos/high", 2), ("test/qos/low", 0)]) == [2, 0]
    pub = client("pub")
    pub.publish("test/qos/high", b"1", qos=1)
    pub.publish("test/qos/low", b"2", qos=2)
    high, low = sub.expect(2)
    assert (high.topic, high.qos) == ("test/qos/high", 1)
    assert (low.topic, low.qos) == ("test/qos/low", 0)


def test_last_will_on_a_dropped_connection_not_on_a_clean_disconnect(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    watcher = client("watcher")
    watcher.subscribe("will/#", 1)
    dropped = client("will-a", will=("will/a", b"gone", 1, False))
    dropped.drop()
    [will] = watcher.expect(1)
    assert (will.topic, will.payload) == ("will/a", b"gone")

    polite = client("will-b", will=("will/b", b"gone", 1, False))
    polite.disconnect()
    client("marker").publish("will/end", b"", qos=1)
    assert [m.topic for m in watcher.expect_until("will/end")] == ["will/end"]


def test_keepalive_expiry_closes_the_connection_and_publishes_the_will(
    client: ClientFactory, raw: RawFactory
) -> None:
    watcher = client("watcher")
    watcher.subscribe("will/#", 1)
    silent = raw("silent", keepalive=1, will=("will/silent", b"expired", 1, False))
    started = time.monotonic()
    [will] = watcher.expect(1, timeout=20)
    assert will.topic == "will/silent"
    assert silent.closed_by_broker(timeout=10)
    assert time.monotonic() - started >= 1.0  # not before the keepalive (1 s) has passed


def test_zero_length_client_id(raw: RawFactory) -> None:
    accepted = raw()
    assert accepted.connect("", clean=True, username="alice", password=USERS["alice"]) == (False, 0)
    assert accepted.subscribe(1, [("test/z", 1)]) == [1]  # a working session under an assigned id
    accepted.disconnect()
    refused = raw()
    assert (
        refused.connect("", clean=False, username="alice", password=USERS["alice"])[1] == 2
    )  # [MQTT-3.1.3-8]
    assert refused.closed_by_broker()


def test_dollar_topics_are_not_matched_by_leading_wildcards(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    sub = client("dollar-sub", user="admin")
    assert sub.subscribe_many([("#", 1), ("+/x", 1), ("$test/#", 1)]) == [1, 1, 1]
    pub = client("dollar-pub", user="admin")
    pub.publish("$test/x", b"dollar", qos=1)  # publishing to a $ topic does not disconnect
    pub.publish("test/end", b"", qos=1)
    got = sub.expect_until("test/end")
    assert [m.topic for m in got] == ["$test/x", "test/end"]  # once, through $test/# only [MQTT-4.7.2-1]


def test_unsubscribe_stops_delivery(mqtt_broker: RunningBroker, client: ClientFactory) -> None:
    sub = client("unsub")
    sub.subscribe_many([("test/u", 1), ("test/u-end", 1)])
    pub = client("pub")
    pub.publish("test/u", b"1", qos=1)
    assert sub.expect(1)[0].payload == b"1"
    sub.unsubscribe("test/u")
    pub.publish("test/u", b"2", qos=1)
    pub.publish("test/u-end", b"", qos=1)
    assert [m.topic for m in sub.expect_until("test/u-end")] == ["test/u-end"]


def test_subscription_outside_the_acl_is_refused(mqtt_broker: RunningBroker, client: ClientFactory) -> None:
    alice = client("alice")
    assert alice.subscribe("secret/x", 1) == SUBACK_FAILURE  # both brokers say so in the SUBACK
    alice.subscribe("test/end", 1)
    admin = client("admin", user="admin")
    admin.publish("secret/x", b"classified", qos=1)
    admin.publish("test/end", b"", qos=1)
    assert [m.topic for m in alice.expect_until("test/end")] == ["test/end"]  # and nothing is delivered


def test_retained_messages_respect_the_receive_acl(mqtt_broker: RunningBroker, client: ClientFactory) -> None:
    admin = client("admin-sub", user="admin", clean=False)
    admin.subscribe("secret/#", 1)  # someone else's subscription must not leak to alice
    writer = client("writer", user="admin")
    writer.publish("secret/r", b"classified", qos=1, retain=True)
    alice = client("alice")
    alice.subscribe("test/x", 1)
    writer.publish("test/x", b"after", qos=1)
    assert [m.topic for m in alice.expect_until("test/x")] == ["test/x"]


def test_publish_refused_by_the_acl_is_not_delivered(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    admin = client("admin", user="admin")
    admin.subscribe("#", 1)
    alice = client("alice")
    alice.publish("secret/y", b"x", qos=1)  # acknowledged (MQTT 3.1.1 has no refusal), then dropped
    alice.publish("test/end", b"", qos=1)
    assert [m.topic for m in admin.expect_until("test/end")] == ["test/end"]


def test_unacknowledged_qos1_outlives_the_old_five_second_timer(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    """Stock amqtt dropped a QoS 1 message unacknowledged for 5 s; here it waits for its PUBACK."""
    sub = deliver_unacknowledged(client, "slow", "test/slow", b"patience")
    time.sleep(6)  # the point of the test: longer than amqtt's hard-coded 5 s
    sub.drop()
    again = client("slow", clean=False)
    [redelivered] = again.expect(1)
    assert (redelivered.payload, redelivered.dup) == (b"patience", True)


def test_refused_connects(raw: RawFactory) -> None:
    wrong = raw()
    wrong.send(connect_packet("x", username="alice", password="wrong"))
    connack = wrong.receive_kind(CONNACK)
    assert connack.body[1] in (4, 5)
    anonymous = raw()
    assert anonymous.connect("anon")[1] in (4, 5)  # anonymous access is off unless enabled


def test_shared_subscription_gives_each_message_to_one_member(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    members = [client("share-a"), client("share-b", user="bob")]
    for member in members:
        assert member.subscribe("$share/workers/test/jobs/#", 1) == 1
    pub = client("pub")
    for i in range(20):
        pub.publish(f"test/jobs/{i}", b"%d" % i, qos=1)
    got: list[bytes] = []
    for member in members:
        member.sync()
        while not member.messages.empty():
            got.append(member.messages.get_nowait().payload)
    assert sorted(got) == sorted(b"%d" % i for i in range(20))  # every job once, to one member


def test_read_access_alone_does_not_join_a_shared_group(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    """PROTOCOL 1: `$share/{group}/{filter}` needs a grant naming the group. admin may read `#`
    but holds no `$share/workers/...` grant: both brokers refuse its join and the members get
    every job. (With an acl_file, Mosquitto 2.0.11 never checked a SUBSCRIBE: admin joined and
    took its turn of the jobs, which it may read.)"""
    member = client("share-member")
    assert member.subscribe("$share/workers/test/jobs/#", 1) == 1
    intruder = client("share-intruder", user="admin")
    code = intruder.subscribe("$share/workers/test/jobs/#", 1)
    pub = client("pub")
    for i in range(10):
        pub.publish(f"test/jobs/{i}", b"%d" % i, qos=1)
    member.sync()
    intruder.sync()
    assert (code, intruder.messages.qsize(), member.messages.qsize()) == (SUBACK_FAILURE, 0, 10)


def test_shared_subscription_queues_for_an_offline_member(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    worker = client("share-offline", clean=False)
    assert worker.subscribe("$share/workers/test/jobs/#", 1) == 1
    worker.disconnect()
    pub = client("pub")
    for i in range(3):
        pub.publish(f"test/jobs/{i}", b"%d" % i, qos=1)
    back = client("share-offline", clean=False)
    assert [m.payload for m in back.expect(3)] == [b"0", b"1", b"2"]


def test_subscribing_again_replaces_the_qos(mqtt_broker: RunningBroker, client: ClientFactory) -> None:
    sub = client("resub")
    assert sub.subscribe("test/rq", 0) == 0
    assert sub.subscribe("test/rq", 2) == 2  # [MQTT-3.8.4-3]: replaces, does not add
    client("pub").publish("test/rq", b"x", qos=2)
    [message] = sub.expect(1)
    assert message.qos == 2
    sub.sync()
    assert sub.messages.empty()  # one subscription, one copy


def test_a_second_connection_with_the_same_client_id_takes_over(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    first = client("twin", clean=False)
    first.subscribe("test/twin", 1)
    second = client("twin", clean=False, connect=False)
    assert second.connect() is True  # the session continues [MQTT-3.1.4-2]
    assert first.disconnected.wait(15)  # and the first connection is closed
    client("pub").publish("test/twin", b"to the new one", qos=1)
    assert second.expect(1)[0].payload == b"to the new one"
