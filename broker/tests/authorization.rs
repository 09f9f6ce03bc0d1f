//! `[[authorization]]` over STOMP and the console: for each operation (send, consume,
//! browse, create, purge, delete, durable subscribe) one user allowed and one refused, the
//! refusal naming user, operation and destination and changing nothing; hashed passwords and
//! the slowed failed login.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use broker::client::{ClientError, ConnectOptions, StompClient};
use common::{TestBroker, body, recv};

/// Three users in two groups (as the README's example): `admin` administers everything,
/// `app` reads and writes `orders.>` and `prices.>`, `reader` (hashed password) only reads
/// them.
fn security(reader_password: &str) -> String {
    format!(
        r#"
[[users]]
name = "admin"
password = "adminpw"
groups = ["admins"]
[[users]]
name = "app"
password = "apppw"
groups = ["apps"]
[[users]]
name = "reader"
password = "{reader_password}"
groups = ["apps-readers"]

[[authorization]]
queue = ">"
read = ["admins"]
write = ["admins"]
admin = ["admins"]
[[authorization]]
topic = ">"
read = ["admins"]
write = ["admins"]
admin = ["admins"]
[[authorization]]
queue = "orders.>"
read = ["apps", "apps-readers"]
write = ["apps"]
[[authorization]]
topic = "prices.>"
read = ["apps", "apps-readers"]
write = ["apps"]
"#
    )
}

async fn start() -> TestBroker {
    let hash = broker::users::hash_password("readerpw").unwrap();
    TestBroker::start(&security(&hash)).await
}

/// Asserts an ERROR of the form "User u is not authorized to <op>: <destination>".
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>, user: &str, op: &str, dest: &str) {
    match &r {
        Err(ClientError::Broker { message, .. })
            if message.contains(&format!("User {user} is not authorized to {op}"))
                && message.contains(dest) => {}
        other => panic!("expected a refusal of {user} to {op} {dest}, got {other:?}"),
    }
}

async fn pending(b: &TestBroker, queue: &str) -> Option<u64> {
    b.broker
        .destination_stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.destination.is_queue() && &*s.destination.name == queue)
        .map(|s| s.pending)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_create_per_rule() {
    let b = start().await;
    // Sending to a queue that does not exist creates it: `admin` only.
    let mut app = b.client_as("app", "apppw", None).await;
    refused(
        app.send("/queue/orders.in", "x", &[]).await,
        "app",
        "administer",
        "queue://orders.in",
    );
    assert_eq!(pending(&b, "orders.in").await, None, "nothing was created");
    let mut admin = b.client_as("admin", "adminpw", None).await;
    admin.send("/queue/orders.in", "first", &[]).await.unwrap();
    // Now it exists: `app` may write to it, `reader` may not.
    let mut app = b.client_as("app", "apppw", None).await;
    app.send("/queue/orders.in", "second", &[]).await.unwrap();
    let mut reader = b.client_as("reader", "readerpw", None).await;
    refused(
        reader.send("/queue/orders.in", "x", &[]).await,
        "reader",
        "write to",
        "queue://orders.in",
    );
    // A queue no entry grants `apps` anything: refused even though it exists.
    admin.send("/queue/secret", "s", &[]).await.unwrap();
    refused(
        app.send("/queue/secret", "x", &[]).await,
        "app",
        "write to",
        "queue://secret",
    );
    // Topics are their own entries: `orders.in` as a topic is not granted.
    let mut app = b.client_as("app", "apppw", None).await;
    refused(
        app.send("/topic/orders.in", "x", &[]).await,
        "app",
        "write to",
        "topic://orders.in",
    );
    // A composite is checked per destination: `orders.in,secret` is not an `orders.>` name.
    let mut app = b.client_as("app", "apppw", None).await;
    refused(
        app.send("/queue/orders.in,secret", "x", &[]).await,
        "app",
        "write to",
        "queue://secret",
    );
    assert_eq!(pending(&b, "orders.in").await, Some(2));
    assert_eq!(pending(&b, "secret").await, Some(1));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_browse_and_durable_per_rule() {
    let b = start().await;
    let mut admin = b.client_as("admin", "adminpw", None).await;
    admin.send("/queue/orders.in", "o1", &[]).await.unwrap();
    admin.send("/queue/secret", "s1", &[]).await.unwrap();
    admin.send("/topic/prices.eu", "p0", &[]).await.unwrap();

    // Browse: allowed on orders.in, refused (and nothing sent) on secret.
    let mut reader = b.client_as("reader", "readerpw", None).await;
    reader
        .subscribe("br", "/queue/orders.in", "auto", &[("browser", "true")])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut reader).await), "o1");
    assert_eq!(recv(&mut reader).await.get("browser"), Some("end"));
    refused(
        reader
            .subscribe("br2", "/queue/secret", "auto", &[("browser", "true")])
            .await,
        "reader",
        "read from",
        "queue://secret",
    );

    // Consume: allowed on orders.in, refused on secret (whose message stays).
    let mut reader = b.client_as("reader", "readerpw", None).await;
    reader
        .subscribe("c", "/queue/orders.in", "auto", &[])
        .await
        .unwrap();
    assert_eq!(body(&recv(&mut reader).await), "o1");
    let mut app = b.client_as("app", "apppw", None).await;
    refused(
        app.subscribe("c", "/queue/secret", "auto", &[]).await,
        "app",
        "read from",
        "queue://secret",
    );
    assert_eq!(pending(&b, "secret").await, Some(1));
    // A wildcard subscription is checked as its own name: `orders.>` is granted, `>` not.
    let mut app = b.client_as("app", "apppw", None).await;
    app.subscribe("w", "/queue/orders.>", "auto", &[])
        .await
        .unwrap();
    refused(
        app.subscribe("w2", "/queue/>", "auto", &[]).await,
        "app",
        "read from",
        "queue://>",
    );

    // Durable subscription: allowed on prices.eu, refused on an ungranted topic.
    let mut reader = b.client_as("reader", "readerpw", Some("reader-1")).await;
    reader
        .subscribe(
            "d",
            "/topic/prices.eu",
            "auto",
            &[("activemq.subscriptionName", "eu")],
        )
        .await
        .unwrap();
    admin.send("/topic/metrics", "m", &[]).await.unwrap();
    refused(
        reader
            .subscribe(
                "d2",
                "/topic/metrics",
                "auto",
                &[("activemq.subscriptionName", "m")],
            )
            .await,
        "reader",
        "read from",
        "topic://metrics",
    );
    let subs = b.broker.durable_subscriptions().await.unwrap();
    assert_eq!(
        subs.len(),
        1,
        "only the allowed subscription exists: {subs:?}"
    );

    // Unsubscribing drops the subscription's messages: refused to a user who may not read
    // its topic, even with the subscription's client id.
    let mut admin_d = b.client_as("admin", "adminpw", Some("shared-id")).await;
    admin_d
        .subscribe(
            "m",
            "/topic/metrics",
            "auto",
            &[("activemq.subscriptionName", "audit")],
        )
        .await
        .unwrap();
    admin_d.disconnect().await.unwrap();
    let mut reader = b.client_as("reader", "readerpw", Some("shared-id")).await;
    refused(
        reader
            .request(
                broker::stomp::frame::Frame::new("UNSUBSCRIBE")
                    .header("id", "m")
                    .header("activemq.subscriptionName", "audit"),
            )
            .await,
        "reader",
        "read from",
        "topic://metrics",
    );
    assert_eq!(b.broker.durable_subscriptions().await.unwrap().len(), 2);
    // The ERROR closed that connection (STOMP); its client id is free once the broker sees it.
    drop(reader);
    let mut admin_d = b.client_as("admin", "adminpw", Some("shared-id")).await;
    admin_d
        .request(
            broker::stomp::frame::Frame::new("UNSUBSCRIBE")
                .header("id", "m")
                .header("activemq.subscriptionName", "audit"),
        )
        .await
        .unwrap();
    assert_eq!(b.broker.durable_subscriptions().await.unwrap().len(), 1);

    // Advisory topics are readable by everyone; temporary destinations open without a
    // temporary entry.
    let mut app = b.client_as("app", "apppw", None).await;
    app.subscribe("adv", "/topic/ActiveMQ.Advisory.Queue", "auto", &[])
        .await
        .unwrap();
    app.subscribe("t", "/temp-queue/replies", "auto", &[])
        .await
        .unwrap();
    app.send("/temp-queue/replies", "r", &[]).await.unwrap();
    assert_eq!(body(&recv(&mut app).await), "r");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_per_rule() {
    let b = start().await;
    let mut admin = b.client_as("admin", "adminpw", None).await;
    admin.send("/queue/orders.in", "o1", &[]).await.unwrap();
    let mut app = b.client_as("app", "apppw", None).await;
    refused(
        app.send("/queue/ActiveMQ.Admin.Purge.orders.in", "", &[])
            .await,
        "app",
        "administer",
        "queue://orders.in",
    );
    assert_eq!(pending(&b, "orders.in").await, Some(1), "nothing purged");
    admin
        .send("/queue/ActiveMQ.Admin.Purge.orders.in", "", &[])
        .await
        .unwrap();
    assert_eq!(pending(&b, "orders.in").await, Some(0));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_entry_restricts_temporary_destinations() {
    let b = TestBroker::start(&format!(
        "{}\n[[authorization]]\ntemporary = true\nread = [\"admins\"]\nwrite = [\"admins\"]\nadmin = [\"admins\"]\n",
        security("readerpw")
    ))
    .await;
    let mut admin = b.client_as("admin", "adminpw", None).await;
    admin
        .subscribe("t", "/temp-queue/replies", "auto", &[])
        .await
        .unwrap();
    let mut app = b.client_as("app", "apppw", None).await;
    let e = app.subscribe("t", "/temp-queue/replies", "auto", &[]).await;
    refused(e, "app", "administer", "queue://ID:");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_passwords_and_slow_failures() {
    let b = start().await;
    let connect = |login: &str, passcode: &str| {
        let (login, passcode) = (login.to_owned(), passcode.to_owned());
        let endpoint = b.endpoint();
        async move {
            StompClient::connect(
                &endpoint,
                &ConnectOptions {
                    login,
                    passcode,
                    client_id: None,
                    ca: None,
                },
            )
            .await
        }
    };
    connect("reader", "readerpw").await.unwrap();
    // The hash itself is not a password.
    let hash = b.broker.config().users[2].password.clone();
    assert!(hash.starts_with("$argon2id$"));
    assert!(connect("reader", &hash).await.is_err());
    let started = Instant::now();
    let e = connect("reader", "wrong").await;
    assert!(
        matches!(&e, Err(ClientError::Broker { message, .. }) if message.contains("Authentication failed")),
        "{:?}",
        e.map(|_| ())
    );
    assert!(
        started.elapsed() >= broker::users::FAILED_LOGIN_DELAY,
        "a failed login is answered after the delay"
    );
    // The delay holds only that connection: a good login meanwhile is not held by it.
    let slow = tokio::spawn(connect("app", "bad"));
    let started = Instant::now();
    connect("app", "apppw").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(slow.await.unwrap().is_err());
    b.stop().await;
}

/// The console and its API obey the same rules: 403 naming user, operation and destination,
/// nothing changed; a read-only user sees the pages without action buttons.
mod console {
    use std::net::SocketAddr;

    use base64::Engine as _;

    use super::common::http::{Reply, enc, request};
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    async fn get(addr: SocketAddr, auth: &str, path: &str) -> Reply {
        request(addr, "GET", path, &[("Authorization", auth)], None).await
    }

    /// A POST of the API: HTTP Basic with the user's token from `/api/csrf`.
    async fn post(addr: SocketAddr, auth: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        let token = get(addr, auth, "/api/csrf").await;
        assert_eq!(token.status, 200, "{}", token.body);
        let token: serde_json::Value = serde_json::from_str(&token.body).unwrap();
        let token = token["token"].as_str().unwrap().to_owned();
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        request(
            addr,
            "POST",
            path,
            &[("Authorization", auth), ("X-CSRF-Token", &token)],
            Some(("application/x-www-form-urlencoded", &body)),
        )
        .await
    }

    fn forbidden(r: &Reply, user: &str, op: &str, dest: &str) {
        assert_eq!(r.status, 403, "{}", r.body);
        let text = r.body.replace("&#39;", "'").replace("&gt;", ">");
        assert!(
            text.contains(&format!("User {user} is not authorized to {op}")) && text.contains(dest),
            "{}",
            r.body
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn actions_per_rule() {
        let b = start().await;
        let web = b.console().await;
        let addr = web.addr;
        let (admin, app, reader) = (
            basic("admin", "adminpw"),
            basic("app", "apppw"),
            basic("reader", "readerpw"),
        );
        let mut c = b.client_as("admin", "adminpw", None).await;
        c.send("/queue/orders.in", "o1", &[]).await.unwrap();
        c.send("/queue/secret", "s1", &[]).await.unwrap();
        c.send("/topic/prices.eu", "p", &[]).await.unwrap();
        let mut r = b.client_as("reader", "readerpw", Some("reader-1")).await;
        r.subscribe(
            "d",
            "/topic/prices.eu",
            "auto",
            &[("activemq.subscriptionName", "eu")],
        )
        .await
        .unwrap();
        r.disconnect().await.unwrap();

        // Pages: everyone sees them; the action buttons only a user with admin somewhere.
        let page = get(addr, &reader, "/queues").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("orders.in"));
        // Only what the user may read is listed, on the pages and in the JSON API.
        assert!(!page.body.contains("secret"), "{}", page.body);
        let api = get(addr, &reader, "/api/queues").await;
        assert!(
            api.body.contains("orders.in") && !api.body.contains("secret"),
            "{}",
            api.body
        );
        assert!(
            get(addr, &admin, "/api/queues")
                .await
                .body
                .contains("secret")
        );
        assert!(!page.body.contains("purge-") && !page.body.contains("Send a message"));
        let subs = get(addr, &reader, "/subscribers").await;
        assert!(subs.body.contains("eu") && !subs.body.contains("<button>Delete"));
        let page = get(addr, &admin, "/queues").await;
        assert!(page.body.contains("purge-orders.in") && page.body.contains("Send a message"));

        // Browse.
        assert_eq!(
            get(addr, &reader, "/queues/browse?name=orders.in")
                .await
                .status,
            200
        );
        forbidden(
            &get(addr, &reader, "/queues/browse?name=secret").await,
            "reader",
            "read from",
            "queue://secret",
        );

        // Send, and create by sending.
        let sent = post(
            addr,
            &app,
            "/queues/send",
            &[("name", "orders.in"), ("body", "b")],
        )
        .await;
        assert_eq!(sent.status, 303, "{}", sent.body);
        forbidden(
            &post(
                addr,
                &reader,
                "/queues/send",
                &[("name", "orders.in"), ("body", "b")],
            )
            .await,
            "reader",
            "write to",
            "queue://orders.in",
        );
        forbidden(
            &post(
                addr,
                &app,
                "/queues/send",
                &[("name", "orders.new"), ("body", "b")],
            )
            .await,
            "app",
            "administer",
            "queue://orders.new",
        );
        assert_eq!(pending(&b, "orders.new").await, None);
        assert_eq!(pending(&b, "orders.in").await, Some(2));

        // Purge and delete: admin only.
        forbidden(
            &post(addr, &app, "/queues/purge", &[("name", "orders.in")]).await,
            "app",
            "administer",
            "queue://orders.in",
        );
        forbidden(
            &post(addr, &app, "/queues/delete", &[("name", "orders.in")]).await,
            "app",
            "administer",
            "queue://orders.in",
        );
        assert_eq!(pending(&b, "orders.in").await, Some(2), "nothing changed");
        let purged = post(addr, &admin, "/queues/purge", &[("name", "orders.in")]).await;
        assert_eq!(purged.status, 303, "{}", purged.body);
        assert_eq!(pending(&b, "orders.in").await, Some(0));
        let deleted = post(addr, &admin, "/queues/delete", &[("name", "orders.in")]).await;
        assert_eq!(deleted.status, 303, "{}", deleted.body);
        assert_eq!(pending(&b, "orders.in").await, None);

        // Deleting a durable subscription needs admin on its topic.
        let form = [("client_id", "reader-1"), ("name", "eu")];
        forbidden(
            &post(addr, &reader, "/subscribers/delete", &form).await,
            "reader",
            "administer",
            "topic://prices.eu",
        );
        assert_eq!(b.broker.durable_subscriptions().await.unwrap().len(), 1);
        let deleted = post(addr, &admin, "/subscribers/delete", &form).await;
        assert_eq!(deleted.status, 303, "{}", deleted.body);
        assert!(b.broker.durable_subscriptions().await.unwrap().is_empty());

        web.stop().await;
        b.stop().await;
    }
}
