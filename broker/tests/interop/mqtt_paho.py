"""The broker's MQTT door driven by paho-mqtt 1.6 (a client nobody here wrote).

Usage: mqtt_paho.py PORT SCENARIO. Prints "ok SCENARIO" on success; any failure raises
(non-zero exit) with what was expected. Scenarios run by broker/tests/mqtt.rs.
"""
import socket
import sys
import threading
import time

import paho.mqtt.client as mqtt

PORT = int(sys.argv[1])
SCENARIO = sys.argv[2]
WAIT = 30  # seconds, only as a bound on a hang: every wait ends on the event it waits for


class Client:
    def __init__(self, client_id, clean=True, password="admin", will=None):
        self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311)
        self.c.username_pw_set("admin", password)
        if will:
            self.c.will_set(*will)
        self.messages = []
        self.cond = threading.Condition()
        self.connack = None
        self.subacks = []
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe

    def _on_connect(self, c, userdata, flags, rc):
        with self.cond:
            self.connack = (rc, flags.get("session present", 0))
            self.cond.notify_all()

    def _on_subscribe(self, c, userdata, mid, granted):
        with self.cond:
            self.subacks.append(granted)
            self.cond.notify_all()

    def _on_message(self, c, userdata, m):
        with self.cond:
            self.messages.append((m.topic, bytes(m.payload), m.qos, m.retain))
            self.cond.notify_all()

    def wait(self, pred, what):
        with self.cond:
            if not self.cond.wait_for(pred, WAIT):
                raise AssertionError(f"timed out waiting for {what}; got {self.messages}")

    def connect(self):
        self.c.connect("127.0.0.1", PORT, keepalive=30)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        return self.connack

    def subscribe(self, topic, qos):
        n = len(self.subacks)
        self.c.subscribe(topic, qos)
        self.wait(lambda: len(self.subacks) > n, "SUBACK")
        return self.subacks[-1]

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos, retain)
        info.wait_for_publish()  # QoS 1/2: returns once PUBACK / PUBCOMP came

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def qos_round_trips():
    sub = Client("rt-sub")
    assert sub.connect() == (0, 0)
    for q in (0, 1, 2):
        assert sub.subscribe(f"rt/q{q}/#", q) == (q,)
    pub = Client("rt-pub")
    pub.connect()
    for q in (0, 1, 2):
        pub.publish(f"rt/q{q}/x", f"hello {q}".encode(), q)
    # '#' also matches its parent level.
    pub.publish("rt/q1", b"parent", 1)
    sub.wait(lambda: len(sub.messages) == 4, "4 messages")
    got = sorted(sub.messages)
    assert got == sorted([
        ("rt/q0/x", b"hello 0", 0, False),
        ("rt/q1/x", b"hello 1", 1, False),
        ("rt/q2/x", b"hello 2", 2, False),
        ("rt/q1", b"parent", 1, False),
    ]), got
    # Delivered at min(subscription QoS, publish QoS).
    low = Client("rt-low")
    low.connect()
    low.subscribe("rt/min", 1)
    pub.publish("rt/min", b"two", 2)
    pub.publish("rt/min", b"zero", 0)
    low.wait(lambda: len(low.messages) == 2, "2 messages")
    assert sorted(low.messages) == [("rt/min", b"two", 1, False), ("rt/min", b"zero", 0, False)], low.messages
    for c in (sub, pub, low):
        c.stop()


def session_setup():
    c = Client("durable-1", clean=False)
    c.connect()
    assert c.subscribe("p/#", 1) == (1,)
    c.stop()


def session_publish():
    c = Client("durable-pub")
    c.connect()
    for i in range(50):
        c.publish("p/n", f"m{i}".encode(), 1)
    c.publish("r/a", b"keep", 1, retain=True)
    c.publish("r/b", b"gone", 1, retain=True)
    c.publish("r/b", b"", 1, retain=True)  # clears r/b
    c.stop()


def session_resume():
    c = Client("durable-1", clean=False)
    rc, present = c.connect()
    assert (rc, present) == (0, 1), (rc, present)
    c.wait(lambda: len(c.messages) >= 50, "the 50 messages published while away")
    got = sorted({m[1] for m in c.messages})
    assert got == sorted(f"m{i}".encode() for i in range(50)), got
    assert all(m[2] == 1 for m in c.messages)
    c.stop()
    # Retained: one per topic, survives the restart, an empty one cleared r/b.
    r = Client("retained-reader")
    r.connect()
    r.subscribe("r/#", 1)
    r.wait(lambda: len(r.messages) >= 1, "the retained message")
    r.stop()
    assert r.messages == [("r/a", b"keep", 1, True)], r.messages
    # cleanSession=true drops the session: nothing present next time.
    c = Client("durable-1", clean=True)
    assert c.connect() == (0, 0)
    c.stop()
    c = Client("durable-1", clean=False)
    assert c.connect() == (0, 0)
    c.stop()


def will():
    watcher = Client("will-watcher")
    watcher.connect()
    watcher.subscribe("will/#", 1)
    # Goes away without DISCONNECT: its will is published.
    dying = Client("will-dying", will=("will/a", b"died", 1, False))
    dying.connect()
    dying.c.loop_stop()
    dying.c.socket().shutdown(socket.SHUT_RDWR)
    dying.c.socket().close()
    watcher.wait(lambda: len(watcher.messages) >= 1, "the will")
    # A DISCONNECT: no will. The marker published after it arrives alone.
    polite = Client("will-polite", will=("will/b", b"wrong", 1, False))
    polite.connect()
    polite.stop()
    marker = Client("will-marker")
    marker.connect()
    marker.publish("will/marker", b"end", 1)
    marker.stop()
    watcher.wait(lambda: len(watcher.messages) >= 2, "the marker")
    assert watcher.messages == [("will/a", b"died", 1, False), ("will/marker", b"end", 1, False)], watcher.messages
    watcher.stop()


def bad_credentials():
    c = Client("bad", password="wrong")
    rc, _ = c.connect()
    assert rc == 4, rc
    c.c.loop_stop()


def takeover():
    first = Client("same-id")
    first.connect()
    second = Client("same-id")
    assert second.connect() == (0, 0)
    second.subscribe("take/x", 1)
    pub = Client("take-pub")
    pub.connect()
    pub.publish("take/x", b"to the second", 1)
    second.wait(lambda: len(second.messages) == 1, "the message")
    for c in (second, pub):
        c.stop()
    first.c.loop_stop()


{
    "qos_round_trips": qos_round_trips,
    "session_setup": session_setup,
    "session_publish": session_publish,
    "session_resume": session_resume,
    "will": will,
    "bad_credentials": bad_credentials,
    "takeover": takeover,
}[SCENARIO]()
print(f"ok {SCENARIO}")
