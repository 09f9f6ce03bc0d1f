//! The web console and monitoring API against a running broker: the JSON API, `/metrics`, the
//! pages' actions, 401 without credentials, and the hardening: 403 for a POST without the
//! right CSRF token (session, HTTP Basic and login form alike) with nothing changed, sessions
//! that expire when idle and at logout, a bounded number of them, the security headers on
//! every response, and the console over HTTPS with `Secure` cookies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

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

/// `name=value` of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The login form as a browser gets it: its double-submit cookie and the form's token.
async fn login_form(addr: SocketAddr) -> (String, String) {
    let r = http(addr, "GET", "/login", &[], None).await;
    assert_eq!(r.status, 200);
    let cookie = pair(r.set_cookie("console_login").expect("the login cookie"));
    (cookie, csrf_of(&r.body))
}

/// Logs in as admin through the form; the session's `console=...` and its whole `Set-Cookie`.
async fn log_in(addr: SocketAddr) -> (String, String) {
    let (login_cookie, token) = login_form(addr).await;
    let r = http(
        addr,
        "POST",
        "/login",
        &[("Cookie", &login_cookie)],
        Some(&[
            ("csrf", &token),
            ("username", "admin"),
            ("password", "admin"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r
        .set_cookie("console")
        .expect("a session cookie")
        .to_owned();
    (pair(&set), set)
}

/// The status of a GET of the queues page with this session cookie.
async fn status_with(addr: SocketAddr, cookie: &str) -> u16 {
    http(addr, "GET", "/queues", &[("Cookie", cookie)], None)
        .await
        .status
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
    let web = b.console().await;
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
        "broker_store_usage_bytes ",
        "broker_store_limit_bytes 107374182400",
        "broker_store_percent 0",
        "broker_memory_percent ",
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
    assert_eq!(refused.status, 403, "a form without the token");
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
    assert_eq!(
        pending(&json(addr, "/api/queues").await, "orders"),
        3,
        "only the send with the token arrived"
    );
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
    let (login_cookie, login_csrf) = login_form(addr).await;
    let failed = http(
        addr,
        "POST",
        "/login",
        &[("Cookie", &login_cookie)],
        Some(&[
            ("csrf", &login_csrf),
            ("username", "admin"),
            ("password", "wrong"),
        ]),
    )
    .await;
    assert_eq!(failed.status, 401);
    assert!(failed.set_cookie("console").is_none());
    let (cookie, set_cookie) = log_in(addr).await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
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
    let web = b.console().await;
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

/// A message sent over STOMP with `AMQ_SCHEDULED_DELAY` is listed on the console and its JSON
/// API, and cancelled there; a bad delay gets an ERROR naming the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_are_listed_and_cancelled() {
    let b = TestBroker::start("").await;
    let web = b.console().await;
    let addr = web.addr;
    let mut c = b.client().await;
    c.send(
        "/queue/web.later",
        "in ten minutes",
        &[("AMQ_SCHEDULED_DELAY", "600000"), ("persistent", "true")],
    )
    .await
    .unwrap();
    let jobs = json(addr, "/api/scheduled").await;
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["destination"], "queue://web.later");
    let id = jobs[0]["id"].as_str().unwrap().to_owned();
    let page = http(addr, "GET", "/scheduled", &[("Authorization", ADMIN)], None).await;
    assert!(page.body.contains(&id), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let r = http(
        addr,
        "POST",
        "/scheduled/cancel",
        &[("Authorization", ADMIN)],
        Some(&[("csrf", &csrf), ("id", &id)]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(
        json(addr, "/api/scheduled")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let e = c
        .send(
            "/queue/web.later",
            "never",
            &[("AMQ_SCHEDULED_DELAY", "-1")],
        )
        .await;
    assert!(
        matches!(&e, Err(broker::client::ClientError::Broker { message, .. }) if message.contains("AMQ_SCHEDULED_DELAY")),
        "{e:?}"
    );
    web.stop().await;
    b.stop().await;
}

async fn subscriber_count(addr: SocketAddr) -> usize {
    json(addr, "/api/subscribers")
        .await
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_change_needs_the_right_token_and_changes_nothing_without_it() {
    let b = TestBroker::start("").await;
    let web = b.console().await;
    let addr = web.addr;
    let mut c = b.client_as("admin", "admin", Some("web-client")).await;
    for body in ["one", "two"] {
        c.send("/queue/orders", body, &[("persistent", "true")])
            .await
            .unwrap();
    }
    c.subscribe(
        "d",
        "/topic/news",
        "auto",
        &[("activemq.subscriptionName", "reader")],
    )
    .await
    .unwrap();
    c.disconnect().await.unwrap();
    let (session, _) = log_in(addr).await;
    let session_token = csrf_of(
        &http(addr, "GET", "/queues", &[("Cookie", &session)], None)
            .await
            .body,
    );
    let basic_token = json(addr, "/api/csrf").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(session_token, basic_token);

    let actions: [(&str, &[(&str, &str)]); 5] = [
        ("/queues/send", &[("name", "orders"), ("body", "forged")]),
        ("/queues/purge", &[("name", "orders")]),
        ("/queues/delete", &[("name", "orders")]),
        (
            "/subscribers/delete",
            &[("client_id", "web-client"), ("name", "reader")],
        ),
        ("/logout", &[]),
    ];
    // Each kind of credentials with no token, a wrong one, and the other credentials' token.
    let credentials = [
        (("Cookie", session.as_str()), basic_token.as_str()),
        (("Authorization", ADMIN), session_token.as_str()),
    ];
    for (path, fields) in actions {
        for (auth, others_token) in credentials {
            for token in [None, Some("wrong"), Some(others_token)] {
                let mut form = fields.to_vec();
                if let Some(t) = token {
                    form.push(("csrf", t));
                }
                let r = http(addr, "POST", path, &[auth], Some(&form)).await;
                assert_eq!(r.status, 403, "{path} {auth:?} token {token:?}");
                // In the header instead of the form: the same.
                if let Some(t) = token {
                    let r = http(
                        addr,
                        "POST",
                        path,
                        &[auth, ("X-CSRF-Token", t)],
                        Some(fields),
                    )
                    .await;
                    assert_eq!(r.status, 403, "{path} {auth:?} header {t:?}");
                }
            }
        }
    }
    // Nothing changed: the messages, the queue, the subscriber and the session are all there.
    let queues = json(addr, "/api/queues").await;
    assert_eq!(pending(&queues, "orders"), 2, "{queues}");
    assert_eq!(subscriber_count(addr).await, 1);
    assert_eq!(status_with(addr, &session).await, 200, "still logged in");

    // A Basic client's token, from /api/csrf, in the header: accepted.
    let r = http(
        addr,
        "POST",
        "/queues/purge",
        &[("Authorization", ADMIN), ("X-CSRF-Token", &basic_token)],
        Some(&[("name", "orders")]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(pending(&json(addr, "/api/queues").await, "orders"), 0);
    // The session's token in the form: accepted.
    let r = http(
        addr,
        "POST",
        "/subscribers/delete",
        &[("Cookie", &session)],
        Some(&[
            ("csrf", &session_token),
            ("client_id", "web-client"),
            ("name", "reader"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(subscriber_count(addr).await, 0);
    web.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_needs_its_own_signed_token_and_cookie() {
    let b = TestBroker::start("").await;
    let web = b.console().await;
    let addr = web.addr;
    let (cookie, token) = login_form(addr).await;
    let (_, other_token) = login_form(addr).await;
    // Well-formed (a 16-byte nonce, a 32-byte tag), but not signed by the console.
    let forged = "bm90IGEgcmVhbCBub25jZQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let forged_cookie = format!("console_login={forged}");
    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        ("no cookie, no token", None, None),
        ("no cookie", None, Some(&token)),
        ("no token", Some(&cookie), None),
        ("another form's token", Some(&cookie), Some(&other_token)),
        ("an unsigned pair", Some(&forged_cookie), Some(forged)),
    ];
    for (what, cookie, token) in cases {
        let mut form = vec![("username", "admin"), ("password", "admin")];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
        let r = http(addr, "POST", "/login", &headers, Some(&form)).await;
        assert_eq!(r.status, 403, "{what}");
        assert!(r.set_cookie("console").is_none(), "{what}: no session");
        // A fresh form to try again with.
        assert!(r.set_cookie("console_login").is_some(), "{what}");
        assert!(r.body.contains("name=\"csrf\""), "{what}");
    }
    let r = http(
        addr,
        "POST",
        "/login",
        &[("Cookie", &cookie)],
        Some(&[
            ("csrf", &token),
            ("username", "admin"),
            ("password", "admin"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303);
    let session = pair(r.set_cookie("console").unwrap());
    assert_eq!(status_with(addr, &session).await, 200);
    assert!(
        r.set_cookie("console_login").unwrap().contains("Max-Age=0"),
        "the login cookie is dropped once used"
    );
    web.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires_and_its_cookie_is_refused() {
    let b =
        TestBroker::start("[transports]\nstomp = \"127.0.0.1:0\"\nweb_session_idle_secs = 60\n")
            .await;
    let web = b.console().await;
    let addr = web.addr;
    let (session, _) = log_in(addr).await;
    assert_eq!(status_with(addr, &session).await, 200);
    // Used within the idle time, twice: each use restarts it.
    for _ in 0..2 {
        web.advance_session_clock(Duration::from_secs(50));
        assert_eq!(status_with(addr, &session).await, 200);
    }
    web.advance_session_clock(Duration::from_secs(61));
    assert_eq!(status_with(addr, &session).await, 401, "expired");
    let page = http(addr, "GET", "/queues", &[("Cookie", &session)], None).await;
    assert_eq!(page.status, 401, "and forgotten: refused again");
    assert!(page.body.contains("Log in"));
    // HTTP Basic has no session to expire.
    assert_eq!(
        http(addr, "GET", "/queues", &[("Authorization", ADMIN)], None)
            .await
            .status,
        200
    );
    web.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_forgets_the_session_on_the_broker() {
    let b = TestBroker::start("").await;
    let web = b.console().await;
    let addr = web.addr;
    let (session, _) = log_in(addr).await;
    let (other, _) = log_in(addr).await;
    assert_ne!(session, other, "every login a new id");
    let token = csrf_of(
        &http(addr, "GET", "/queues", &[("Cookie", &session)], None)
            .await
            .body,
    );
    let out = http(
        addr,
        "POST",
        "/logout",
        &[("Cookie", &session)],
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(
        out.set_cookie("console").unwrap().contains("Max-Age=0"),
        "the browser is told to drop the cookie"
    );
    // A replayed cookie (a browser that kept it, or someone who copied it) is refused.
    assert_eq!(status_with(addr, &session).await, 401);
    let again = http(
        addr,
        "POST",
        "/logout",
        &[("Cookie", &session)],
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(again.status, 401);
    assert_eq!(
        status_with(addr, &other).await,
        200,
        "other sessions live on"
    );
    web.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded_and_the_least_recently_used_goes_first() {
    let b =
        TestBroker::start("[transports]\nstomp = \"127.0.0.1:0\"\nweb_max_sessions = 2\n").await;
    let web = b.console().await;
    let addr = web.addr;
    // The clock moves between steps so that "least recently used" has one answer.
    let (first, _) = log_in(addr).await;
    web.advance_session_clock(Duration::from_secs(1));
    let (second, _) = log_in(addr).await;
    web.advance_session_clock(Duration::from_secs(1));
    assert_eq!(status_with(addr, &first).await, 200);
    web.advance_session_clock(Duration::from_secs(1));
    let (third, _) = log_in(addr).await;
    assert_eq!(status_with(addr, &second).await, 401, "the idlest went");
    assert_eq!(status_with(addr, &first).await, 200);
    assert_eq!(status_with(addr, &third).await, 200);
    web.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_forbids_framing_and_scripts() {
    let b = TestBroker::start("").await;
    let web = b.console().await;
    let addr = web.addr;
    let (session, _) = log_in(addr).await;
    let basic = [("Authorization", ADMIN)];
    let responses = [
        ("login page", http(addr, "GET", "/login", &[], None).await),
        ("401 page", http(addr, "GET", "/queues", &[], None).await),
        ("401 API", http(addr, "GET", "/api/queues", &[], None).await),
        ("overview", http(addr, "GET", "/", &basic, None).await),
        (
            "queues",
            http(addr, "GET", "/queues", &[("Cookie", &session)], None).await,
        ),
        (
            "confirm",
            http(
                addr,
                "GET",
                "/queues/confirm?action=purge&name=q",
                &basic,
                None,
            )
            .await,
        ),
        (
            "API",
            http(addr, "GET", "/api/overview", &basic, None).await,
        ),
        ("metrics", http(addr, "GET", "/metrics", &basic, None).await),
        (
            "403",
            http(
                addr,
                "POST",
                "/queues/purge",
                &basic,
                Some(&[("name", "q")]),
            )
            .await,
        ),
        ("404", http(addr, "GET", "/nowhere", &basic, None).await),
        (
            "style sheet",
            http(addr, "GET", "/console.css", &[], None).await,
        ),
    ];
    for (what, r) in &responses {
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
        let csp = r.header("content-security-policy").unwrap_or("");
        for directive in [
            "default-src 'self'",
            "script-src 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{what}: {csp}");
        }
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        if r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
        {
            // The policy would block inline script and style: the pages have none.
            for inline in ["<script", "<style", " style=", "javascript:"] {
                assert!(!r.body.contains(inline), "{what} has {inline}");
            }
            assert!(r.body.contains("href=\"/console.css\""), "{what}");
            assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        }
    }
    let (_, css) = &responses[responses.len() - 1];
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(css.body.contains("header{background:#1d3557"));
    web.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_over_tls_sets_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let tls = common::TestCert::write(dir.path());
    let cert_path = tls.cert.clone();
    let b = TestBroker::start(&tls.transports("web_tls = true\n")).await;
    let web = b.console().await;
    let addr = web.addr;
    assert!(web.url().starts_with("https://"));
    let https = |method: &'static str,
                 path: &'static str,
                 headers: Vec<(&'static str, String)>,
                 form: Option<String>| {
        let cert_path = cert_path.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            common::http::request_tls(
                addr,
                &cert_path,
                method,
                path,
                &h,
                form.as_deref()
                    .map(|f| ("application/x-www-form-urlencoded", f)),
            )
            .await
        }
    };

    let form = https("GET", "/login", vec![], None).await;
    assert_eq!(form.status, 200);
    assert_eq!(form.header("x-frame-options"), Some("DENY"));
    let login_cookie = form.set_cookie("console_login").unwrap();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");
    let logged = https(
        "POST",
        "/login",
        vec![("Cookie", pair(login_cookie))],
        Some(format!(
            "csrf={}&username=admin&password=admin",
            enc(&csrf_of(&form.body))
        )),
    )
    .await;
    assert_eq!(logged.status, 303, "{}", logged.body);
    let set = logged.set_cookie("console").unwrap();
    for attribute in ["; Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attribute), "{set}");
    }
    let page = https("GET", "/queues", vec![("Cookie", pair(set))], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Send a message"));

    // Plain HTTP on the HTTPS port gets no HTTP answer, and the console carries on.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    assert_eq!(https("GET", "/login", vec![], None).await.status, 200);
    web.stop().await;
    b.stop().await;
}
