//! The web console in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`, installed by `.ci/run`). Logs in (the form's CSRF cookie and
//! token), sends a message from the queues page, sees the pending count change, browses it,
//! purges the queue, and logs out, every POST under the console's CSRF rules and its
//! Content-Security-Policy (the style sheet must still apply); saves a screenshot of the queues
//! page to `target/console-queues.png`. Run once over HTTP and once over HTTPS (`web_tls`, a
//! self-signed certificate the browser is told to accept), where the session cookie must be
//! `Secure`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestBroker;
use common::browser::{Driver, browser_installed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_send_browse_purge_and_log_out_in_chromium() {
    if !browser_installed() {
        return;
    }
    let b = TestBroker::start("").await;
    console_scenario(&b, true).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_https_with_a_secure_cookie() {
    if !browser_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = common::TestCert::write(dir.path());
    let b = TestBroker::start(&tls.transports("web_tls = true\n")).await;
    console_scenario(&b, false).await;
    b.stop().await;
}

/// The console as a person uses it; `screenshot` saves the queues page.
async fn console_scenario(b: &TestBroker, screenshot: bool) {
    let web = b.console().await;
    let base = web.url();
    let profile = tempfile::tempdir().unwrap();
    let d = Driver::start(profile.path(), web.tls).await;

    d.go(&format!("{base}/queues")).await;
    assert!(
        d.source().await.contains("Log in"),
        "without a login the console asks for one"
    );
    d.go(&format!("{base}/login")).await;
    d.type_into("#username", "admin").await;
    d.type_into("#password", "admin").await;
    d.click("#login").await;
    d.wait_source("Send a message").await; // logged in, on the queues page
    // The style sheet, the only one the Content-Security-Policy allows, is applied.
    assert_eq!(
        d.css("header", "background-color").await,
        "rgba(29, 53, 87, 1)"
    );
    let session = d.cookie("console").await;
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert_eq!(session["secure"], web.tls, "{session}");

    d.type_into("#send-name", "e2e").await;
    d.type_into("#send-body", "hello from chromium").await;
    d.click("#send").await;
    d.wait_text("#pending-e2e", "1").await;

    // A second message so the screenshot shows a queue with some depth.
    d.type_into("#send-name", "orders").await;
    d.type_into("#send-body", "order 1").await;
    d.click("#send").await;
    d.wait_text("#pending-orders", "1").await;
    if screenshot {
        let png = d.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"));
        // Kept for a look after the run, beside the build (wherever CARGO_TARGET_DIR puts it).
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            std::path::PathBuf::from,
        );
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("console-queues.png"), &png).unwrap();
    }

    d.click("#browse-e2e").await;
    d.wait_source("hello from chromium").await;

    d.go(&format!("{base}/queues")).await;
    d.click("#purge-e2e").await;
    d.wait_source("Really").await;
    d.click("#confirm").await;
    d.wait_text("#pending-e2e", "0").await;
    assert!(b.broker.browse("e2e", 10).await.unwrap().is_empty());

    d.click("#logout").await;
    d.wait_source("id=\"login\"").await;
    d.go(&format!("{base}/queues")).await;
    assert!(
        d.source().await.contains("Log in"),
        "logged out: the console asks for a login again"
    );

    d.quit().await;
    drop(d);
    web.stop().await;
}
