//! STOMP over WebSocket with a real browser client: the page `fixtures/stompjs/page.html`
//! loads the JavaScript STOMP client `@stomp/stompjs` (vendored, pinned; see
//! `fixtures/stompjs/README.md`) in headless Chromium, driven through chromedriver as the
//! console's test is. The page negotiates `v12.stomp`, makes a durable topic subscription
//! (ActiveMQ's headers: `client-id` on CONNECT, `activemq.subscriptionName` on SUBSCRIBE),
//! goes away while persistent messages are published over STOMP/TCP, and after a broker
//! restart receives them and a persistent queue message; a persistent message it sends
//! reaches a STOMP/TCP consumer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::browser::{Driver, browser_installed};
use common::{TestBroker, body, recv};
use serde_json::{Value, json};

const CONFIG: &str = "[transports]\nstomp = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\n";

/// Calls the page's function expression `call` (which returns a Promise) and returns what it
/// resolves to; a rejection fails the test with its reason.
async fn page(d: &Driver, call: &str) -> Value {
    let script = format!(
        "const done = arguments[arguments.length - 1];\n\
         Promise.resolve().then(() => {call}).then(\n\
           (v) => done({{ ok: v === undefined ? null : v }}),\n\
           (e) => done({{ error: String(e) }}));"
    );
    let v = d
        .execute_async(&script, Vec::new(), Duration::from_secs(20))
        .await;
    assert!(v.get("error").is_none(), "{call}: {v}");
    v["ok"].clone()
}

async fn open_page(d: &Driver, b: &TestBroker) {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stompjs/page.html");
    let ws = b.server.websocket.expect("websocket listener");
    d.go(&format!("file://{}?ws=ws://{ws}/", fixture.display()))
        .await;
}

fn bodies(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stompjs_in_chromium_sends_receives_and_keeps_a_durable_subscription() {
    if !browser_installed() {
        return;
    }
    let b = TestBroker::start(CONFIG).await;
    let profile = tempfile::tempdir().unwrap();
    let d = Driver::start(profile.path(), false).await;
    open_page(&d, &b).await;

    let connected = page(&d, "connect('browser-1')").await;
    assert_eq!(
        connected,
        json!({"version": "1.2", "heartBeat": "1000,1000", "protocol": "v12.stomp"})
    );
    page(
        &d,
        "subscribe('/topic/browser-news', {'activemq.subscriptionName': 'news'})",
    )
    .await;
    page(&d, "disconnect()").await;

    // While the browser is away: persistent messages for its durable subscription and its
    // queue, then a broker restart.
    let mut tcp = b.client().await;
    for text in ["missed-1", "missed-2"] {
        tcp.send("/topic/browser-news", text, &[("persistent", "true")])
            .await
            .unwrap();
    }
    tcp.send("/queue/browser-in", "queued", &[("persistent", "true")])
        .await
        .unwrap();
    tcp.disconnect().await.unwrap();
    let b = b.restart().await;
    let durables = b.broker.durable_subscriptions().await.unwrap();
    assert_eq!(durables.len(), 1, "{durables:?}");

    open_page(&d, &b).await;
    page(&d, "connect('browser-1')").await;
    page(
        &d,
        "subscribe('/topic/browser-news', {'activemq.subscriptionName': 'news'})",
    )
    .await;
    page(&d, "subscribe('/queue/browser-in', {})").await;
    let news = page(&d, "waitFor('/topic/browser-news', 2)").await;
    assert_eq!(bodies(&news), ["missed-1", "missed-2"]);
    assert_eq!(news[0]["headers"]["persistent"], "true");
    let queued = page(&d, "waitFor('/queue/browser-in', 1)").await;
    assert_eq!(bodies(&queued), ["queued"]);

    // And back: a persistent message from the browser to a STOMP/TCP consumer.
    page(
        &d,
        "send('/queue/browser-out', 'from the browser', {persistent: 'true'})",
    )
    .await;
    let mut tcp = b.client().await;
    tcp.subscribe("s", "/queue/browser-out", "auto", &[])
        .await
        .unwrap();
    let m = recv(&mut tcp).await;
    assert_eq!(body(&m), "from the browser");
    assert_eq!(m.get("persistent"), Some("true"));
    page(&d, "disconnect()").await;
    d.quit().await;
    b.stop().await;
}
