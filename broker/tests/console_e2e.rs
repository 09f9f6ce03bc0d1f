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

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::TestBroker;
use common::http::request;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let text = body.map(|b| b.to_string());
    let r = request(
        addr,
        method,
        path,
        &[],
        text.as_deref().map(|t| ("application/json", t)),
    )
    .await;
    let v: Value =
        serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{method} {path}: {}", r.body));
    assert!(r.status < 300, "{method} {path}: {} {v}", r.status);
    v["value"].clone()
}

impl Driver {
    async fn start(profile: &std::path::Path, accept_self_signed: bool) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": accept_self_signed,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1100,700", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = call(addr, "POST", "/session", Some(caps)).await;
        Driver {
            child,
            addr,
            session: v["sessionId"].as_str().unwrap().to_owned(),
        }
    }

    async fn go(&self, url: &str) {
        call(
            self.addr,
            "POST",
            &format!("/session/{}/url", self.session),
            Some(json!({"url": url})),
        )
        .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = call(
            self.addr,
            "POST",
            &format!("/session/{}/element", self.session),
            Some(json!({"using": "css selector", "value": css})),
        )
        .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        call(
            self.addr,
            "POST",
            &format!("/session/{}/element/{e}/value", self.session),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        call(
            self.addr,
            "POST",
            &format!("/session/{}/element/{e}/click", self.session),
            Some(json!({})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        call(
            self.addr,
            "GET",
            &format!("/session/{}/element/{e}/text", self.session),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    async fn source(&self) -> String {
        call(
            self.addr,
            "GET",
            &format!("/session/{}/source", self.session),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Waits (up to 10 s) until the page holds `needle`: a click that submits a form returns
    /// before the next page has loaded on a busy machine.
    async fn wait_source(&self, needle: &str) {
        for _ in 0..200 {
            if self.source().await.contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never showed {needle:?}:\n{}", self.source().await);
    }

    /// Waits (up to 10 s) until the element's text is `expected`.
    async fn wait_text(&self, css: &str, expected: &str) {
        for _ in 0..200 {
            if self.source().await.contains(&css.replace('#', "id=\""))
                && self.text(css).await == expected
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} never showed {expected:?}:\n{}", self.source().await);
    }

    /// A computed CSS property of the element.
    async fn css(&self, css: &str, property: &str) -> String {
        let e = self.find(css).await;
        call(
            self.addr,
            "GET",
            &format!("/session/{}/element/{e}/css/{property}", self.session),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// The browser's cookie `name` for the current page, as WebDriver describes it.
    async fn cookie(&self, name: &str) -> Value {
        call(
            self.addr,
            "GET",
            &format!("/session/{}/cookie/{name}", self.session),
            None,
        )
        .await
    }

    async fn screenshot(&self) -> Vec<u8> {
        let b64 = call(
            self.addr,
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        )
        .await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
    }

    async fn quit(&self) {
        call(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
    }
}

fn browser_installed() -> bool {
    let found =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !found {
        test_support::skip(
            "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        );
    }
    found
}

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
