"""Interoperability with stomp.py, a third-party STOMP client (PyPI: stomp.py).

Run by tests/interop.rs against a broker on an ephemeral port:
    python3 stomp_py.py <port>
Prints OK <scenario> per scenario; exits non-zero on the first failure.
"""
import queue
import sys
import time

import stomp

PORT = int(sys.argv[1])


class Inbox(stomp.ConnectionListener):
    def __init__(self):
        self.q = queue.Queue()
        self.receipts = queue.Queue()
        self.errors = []

    def on_message(self, frame):
        self.q.put(frame)

    def on_error(self, frame):
        self.errors.append(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers.get("receipt-id"))

    def wait_receipt(self, rid, timeout=10):
        while True:
            if self.receipts.get(timeout=timeout) == rid:
                return

    def get(self, timeout=10):
        return self.q.get(timeout=timeout)

    def empty_for(self, seconds=0.5):
        try:
            frame = self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected message {frame.body!r}")


def connect(client_id=None, heartbeats=(0, 0)):
    conn = stomp.Connection12([("127.0.0.1", PORT)], heartbeats=heartbeats)
    inbox = Inbox()
    conn.set_listener("inbox", inbox)
    headers = {"client-id": client_id} if client_id else {}
    conn.connect("admin", "admin", wait=True, headers=headers)
    return conn, inbox


def subscribe_sync(conn, inbox, destination, **kw):
    """SUBSCRIBE and wait for its receipt, so the subscription exists before going on."""
    rid = f"sub-{destination}-{time.monotonic_ns()}"
    headers = dict(kw.pop("headers", {}), receipt=rid)
    conn.subscribe(destination, headers=headers, **kw)
    inbox.wait_receipt(rid)


def send_receive():
    conn, inbox = connect()
    conn.subscribe("/queue/py.basic", id="1", ack="auto")
    conn.send("/queue/py.basic", "hello from stomp.py", headers={"persistent": "true", "receipt": "r1"})
    frame = inbox.get()
    assert frame.body == "hello from stomp.py", frame.body
    assert frame.headers["destination"] == "/queue/py.basic"
    conn.disconnect()


def client_ack():
    conn, inbox = connect()
    for i in range(3):
        conn.send("/queue/py.client", f"m{i}", headers={"persistent": "true"})
    conn.subscribe("/queue/py.client", id="1", ack="client")
    frames = [inbox.get() for _ in range(3)]
    assert [f.body for f in frames] == ["m0", "m1", "m2"], [f.body for f in frames]
    conn.ack(frames[1].headers["ack"])  # cumulative: m0 and m1
    conn.disconnect()
    conn, inbox = connect()
    conn.subscribe("/queue/py.client", id="1", ack="client-individual")
    again = inbox.get()
    assert again.body == "m2", again.body
    assert again.headers.get("redelivered") == "true", again.headers
    conn.ack(again.headers["ack"])
    inbox.empty_for()
    conn.disconnect()


def transactions():
    conn, inbox = connect()
    conn.subscribe("/queue/py.tx", id="1", ack="client-individual")
    tx = conn.begin()
    conn.send("/queue/py.tx", "rolled back", headers={"persistent": "true"}, transaction=tx)
    conn.abort(tx)
    inbox.empty_for()
    tx = conn.begin()
    conn.send("/queue/py.tx", "committed", headers={"persistent": "true"}, transaction=tx)
    inbox.empty_for()
    conn.commit(tx)
    frame = inbox.get()
    assert frame.body == "committed", frame.body
    tx = conn.begin()
    conn.ack(frame.headers["ack"], transaction=tx)
    conn.commit(tx)
    conn.disconnect()


def durable_subscription_across_client_restart():
    conn, inbox = connect(client_id="py-durable")
    subscribe_sync(conn, inbox, "/topic/py.news", id="d", ack="auto", headers={"activemq.subscriptionName": "reader"})
    conn.disconnect()
    pub, _ = connect()
    for i in range(3):
        pub.send("/topic/py.news", f"n{i}", headers={"persistent": "true"})
    pub.disconnect()
    conn, inbox = connect(client_id="py-durable")
    conn.subscribe("/topic/py.news", id="d", ack="auto", headers={"activemq.subscriptionName": "reader"})
    got = [inbox.get().body for _ in range(3)]
    assert got == ["n0", "n1", "n2"], got
    conn.unsubscribe("d", headers={"activemq.subscriptionName": "reader"})
    conn.disconnect()


def nack_redelivers():
    conn, inbox = connect()
    conn.send("/queue/py.nack", "refused once", headers={"persistent": "true"})
    conn.subscribe("/queue/py.nack", id="1", ack="client-individual")
    first = inbox.get()
    conn.nack(first.headers["ack"])
    again = inbox.get()
    assert again.body == "refused once", again.body
    assert again.headers.get("redelivered") == "true", again.headers
    conn.ack(again.headers["ack"])
    conn.disconnect()


def selector_filters():
    conn, inbox = connect()
    subscribe_sync(conn, inbox, "/queue/py.sel", id="1", ack="auto", headers={"selector": "color = 'red'"})
    for color in ["blue", "red", "green", "red"]:
        conn.send("/queue/py.sel", color, headers={"color": color})
    got = [inbox.get().body for _ in range(2)]
    assert got == ["red", "red"], got
    inbox.empty_for()
    conn.disconnect()


def numeric_selectors_on_string_headers():
    """Headers are strings; ActiveMQ compares a numeric one with a number as a number."""
    conn, inbox = connect()
    subscribe_sync(conn, inbox, "/queue/py.num", id="1", ack="auto",
                   headers={"selector": "price > 10 AND price BETWEEN 10 AND 30"})
    for price in ["5", "15", "40", "25"]:
        conn.send("/queue/py.num", price, headers={"price": price})
    got = [inbox.get().body for _ in range(2)]
    assert got == ["15", "25"], got
    inbox.empty_for()
    conn.disconnect()


def heart_beats_keep_a_quiet_connection():
    """Heart-beats every 500 ms both ways: a client idle for 3 s stays connected."""
    conn, inbox = connect(heartbeats=(500, 500))
    subscribe_sync(conn, inbox, "/queue/py.hb", id="1", ack="auto")
    time.sleep(3)
    assert conn.is_connected()
    conn.send("/queue/py.hb", "still here", headers={"receipt": "hb"})
    assert inbox.get().body == "still here"
    conn.disconnect()


def expired_not_delivered():
    conn, inbox = connect()
    past = int(time.time() * 1000) - 1000
    conn.send("/queue/py.exp", "stale", headers={"persistent": "true", "expires": str(past)})
    conn.send("/queue/py.exp", "fresh", headers={"persistent": "true"})
    conn.subscribe("/queue/py.exp", id="1", ack="auto")
    assert inbox.get().body == "fresh"
    inbox.empty_for()
    conn.disconnect()


def priority_order():
    conn, inbox = connect()
    for p in ["1", "9", "4"]:
        conn.send("/queue/py.prio", f"p{p}", headers={"persistent": "true", "priority": p, "receipt": f"prio{p}"})
        inbox.wait_receipt(f"prio{p}")
    conn.subscribe("/queue/py.prio", id="1", ack="auto")
    got = [inbox.get().body for _ in range(3)]
    assert got == ["p9", "p4", "p1"], got
    conn.disconnect()


failed = []
for scenario in [
    send_receive,
    client_ack,
    transactions,
    durable_subscription_across_client_restart,
    nack_redelivers,
    selector_filters,
    numeric_selectors_on_string_headers,
    heart_beats_keep_a_quiet_connection,
    expired_not_delivered,
    priority_order,
]:
    try:
        scenario()
        print("OK", scenario.__name__, flush=True)
    except Exception as e:  # report every scenario, then fail
        print("FAIL", scenario.__name__, repr(e), flush=True)
        failed.append(scenario.__name__)
sys.exit(1 if failed else 0)
