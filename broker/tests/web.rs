//! The web console and monitoring API against a running broker: the JSON API, `/metrics`, the
//! pages' actions, 401 without credentials and 403 without the CSRF token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use broker::web::WebServer;
use common::TestBroker;

const ADMIN: &str = "Basic YWRtaW46YWRtaW4="; // admin:admin

use common::http::{Reply, enc};

/// One HTTP/1.1 request on its own connection, with an optional form body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Reply {
    let body = form.map(|f| {
        f.iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    });
    common::http::request(
        addr,
        method,
        path,
        headers,
        body.as_deref()
            .map(|b| ("application/x-www-form-urlencoded", b)),
    )
    .await
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a CSRF token in the page")
        + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

async fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let r = http(addr, "GET", path, &[("Authorization", ADMIN)], None).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn pending(queues: &serde_json::Value, name: &str) -> u64 {
    queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .map_or(0, |q| q["pending"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_metrics_actions_and_their_protection() {
    let b = TestBroker::start("").await;
    let web = WebServer::start(b.broker.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let addr = web.addr;

    // Nothing without credentials.
    for path in ["/", "/queues", "/api/queues", "/api/overview", "/metrics"] {
        let r = http(addr, "GET", path, &[], None).await;
        assert_eq!(r.status, 401, "{path}");
    }
    assert!(
        http(addr, "GET", "/api/queues", &[], None)
            .await
            .header("www-authenticate")
            .is_some()
    );
    let wrong = http(
        addr,
        "GET",
        "/api/queues",
        &[("Authorization", "Basic YWRtaW46bm8=")],
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);

    // The API sees what STOMP clients do.
    let mut c = b.client().await;
    c.send("/queue/orders", "one", &[("persistent", "true")])
        .await
        .unwrap();
    c.send("/queue/orders", "two", &[("persistent", "true")])
        .await
        .unwrap();
    c.subscribe("d", "/topic/t", "auto", &[]).await.unwrap();
    let overview = json(addr, "/api/overview").await;
    assert_eq!(overview["store"], "kahadb");
    assert_eq!(overview["state"], "serving (master)");
    assert!(overview["store_size_bytes"].as_u64().unwrap() > 0);
    assert!(
        overview["store_metrics"]["journal_fsyncs"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(pending(&json(addr, "/api/queues").await, "orders"), 2);
    let topics = json(addr, "/api/topics").await;
    assert_eq!(topics[0]["name"], "t");
    assert_eq!(topics[0]["consumers"], 1);
    let conns = json(addr, "/api/connections").await;
    assert!(conns.as_array().unwrap().iter().any(|c| {
        c["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:"))
            && c["protocol"] == "stomp"
    }));

    let metrics = http(addr, "GET", "/metrics", &[("Authorization", ADMIN)], None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    for line in [
        "broker_serving 1",
        "broker_destination_pending{destination=\"queue://orders\"} 2",
        "broker_destination_consumers{destination=\"topic://t\"} 1",
        "broker_store_journal_files ",
        "broker_store_journal_fsyncs ",
        "broker_store_journal_fsync_micros ",
    ] {
        assert!(
            metrics.body.contains(line),
            "missing {line:?} in\n{}",
            metrics.body
        );
    }

    // Actions: POST with the page's CSRF token, refused without it.
    let page = http(addr, "GET", "/queues", &[("Authorization", ADMIN)], None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"pending-orders\">2<"),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let send = [
        ("name", "orders"),
        ("body", "from the console"),
        ("persistent", "true"),
    ];
    let refused = http(
        addr,
        "POST",
        "/queues/send",
        &[("Authorization", ADMIN)],
        Some(&send),
    )
    .await;
    assert_eq!(
        refused.status, 422,
        "a form without the token does not even parse"
    );
    let bad = [("csrf", "nope"), ("name", "orders"), ("body", "x")];
    assert_eq!(
        http(
            addr,
            "POST",
            "/queues/send",
            &[("Authorization", ADMIN)],
            Some(&bad)
        )
        .await
        .status,
        403
    );
    let ok = [
        ("csrf", csrf.as_str()),
        ("name", "orders"),
        ("body", "from the console"),
        ("persistent", "true"),
    ];
    let sent = http(
        addr,
        "POST",
        "/queues/send",
        &[("Authorization", ADMIN)],
        Some(&ok),
    )
    .await;
    assert_eq!(sent.status, 303);
    assert_eq!(pending(&json(addr, "/api/queues").await, "orders"), 3);
    let browse = http(
        addr,
        "GET",
        "/queues/browse?name=orders",
        &[("Authorization", ADMIN)],
        None,
    )
    .await;
    assert!(
        browse.body.contains("from the console") && browse.body.contains("one"),
        "{}",
        browse.body
    );
    assert_eq!(
        http(
            addr,
            "POST",
            "/queues/purge",
            &[("Authorization", ADMIN)],
            Some(&[("csrf", "x"), ("name", "orders")])
        )
        .await
        .status,
        403
    );
    let purged = http(
        addr,
        "POST",
        "/queues/purge",
        &[("Authorization", ADMIN)],
        Some(&[("csrf", &csrf), ("name", "orders")]),
    )
    .await;
    assert_eq!(purged.status, 303);
    assert_eq!(pending(&json(addr, "/api/queues").await, "orders"), 0);
    let deleted = http(
        addr,
        "POST",
        "/queues/delete",
        &[("Authorization", ADMIN)],
        Some(&[("csrf", &csrf), ("name", "orders")]),
    )
    .await;
    assert_eq!(deleted.status, 303);
    assert!(
        json(addr, "/api/queues")
            .await
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["name"] != "orders")
    );

    // The login form gives a session cookie with its own token.
    let failed = http(
        addr,
        "POST",
        "/login",
        &[],
        Some(&[("username", "admin"), ("password", "wrong")]),
    )
    .await;
    assert_eq!(failed.status, 401);
    let logged = http(
        addr,
        "POST",
        "/login",
        &[],
        Some(&[("username", "admin"), ("password", "admin")]),
    )
    .await;
    assert_eq!(logged.status, 303);
    let cookie = logged
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http(addr, "GET", "/subscribers", &[("Cookie", &cookie)], None).await;
    assert_eq!(page.status, 200);
    let session_csrf = csrf_of(&page.body);
    assert_ne!(session_csrf, csrf);
    let out = http(
        addr,
        "POST",
        "/logout",
        &[("Cookie", &cookie)],
        Some(&[("csrf", &session_csrf)]),
    )
    .await;
    assert_eq!(out.status, 303);
    assert_eq!(
        http(addr, "GET", "/queues", &[("Cookie", &cookie)], None)
            .await
            .status,
        401
    );

    web.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_subscribers_are_listed_and_deleted() {
    let b = TestBroker::start("").await;
    let web = WebServer::start(b.broker.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let addr = web.addr;
    let mut c = b.client_as("admin", "admin", Some("web-client")).await;
    c.subscribe(
        "d",
        "/topic/news",
        "auto",
        &[
            ("activemq.subscriptionName", "reader"),
            ("selector", "x = 'y'"),
        ],
    )
    .await
    .unwrap();
    let subs = json(addr, "/api/subscribers").await;
    assert_eq!(subs[0]["client_id"], "web-client");
    assert_eq!(subs[0]["selector"], "x = 'y'");
    assert_eq!(subs[0]["active"], true);
    c.disconnect().await.unwrap();
    let page = http(
        addr,
        "GET",
        "/subscribers",
        &[("Authorization", ADMIN)],
        None,
    )
    .await;
    assert!(page.body.contains("offline"), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let r = http(
        addr,
        "POST",
        "/subscribers/delete",
        &[("Authorization", ADMIN)],
        Some(&[
            ("csrf", &csrf),
            ("client_id", "web-client"),
            ("name", "reader"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(
        json(addr, "/api/subscribers")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    web.stop().await;
    b.stop().await;
}
