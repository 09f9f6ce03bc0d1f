//! Headless Chromium driven through chromedriver (Debian's `chromium` and `chromium-driver`,
//! installed by `.ci/run`), for the tests that need a real browser: the web console's and the
//! STOMP-over-WebSocket JavaScript client's.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::http::request;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
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
    pub async fn start(profile: &std::path::Path, accept_self_signed: bool) -> Driver {
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

    pub async fn go(&self, url: &str) {
        call(
            self.addr,
            "POST",
            &format!("/session/{}/url", self.session),
            Some(json!({"url": url})),
        )
        .await;
    }

    pub async fn find(&self, css: &str) -> String {
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

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        call(
            self.addr,
            "POST",
            &format!("/session/{}/element/{e}/value", self.session),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        call(
            self.addr,
            "POST",
            &format!("/session/{}/element/{e}/click", self.session),
            Some(json!({})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
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

    pub async fn source(&self) -> String {
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
    pub async fn wait_source(&self, needle: &str) {
        for _ in 0..200 {
            if self.source().await.contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never showed {needle:?}:\n{}", self.source().await);
    }

    /// Waits (up to 10 s) until the element's text is `expected`.
    pub async fn wait_text(&self, css: &str, expected: &str) {
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
    pub async fn css(&self, css: &str, property: &str) -> String {
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
    pub async fn cookie(&self, name: &str) -> Value {
        call(
            self.addr,
            "GET",
            &format!("/session/{}/cookie/{name}", self.session),
            None,
        )
        .await
    }

    pub async fn screenshot(&self) -> Vec<u8> {
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

    pub async fn quit(&self) {
        call(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
    }
}

pub fn browser_installed() -> bool {
    let found =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !found {
        test_support::skip(
            "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        );
    }
    found
}

impl Driver {
    /// Runs `script` in the page as WebDriver's asynchronous script (its last argument is the
    /// callback to call with the result), waiting up to `timeout` for it.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>, timeout: Duration) -> Value {
        call(
            self.addr,
            "POST",
            &format!("/session/{}/timeouts", self.session),
            Some(json!({"script": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)})),
        )
        .await;
        call(
            self.addr,
            "POST",
            &format!("/session/{}/execute/async", self.session),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }
}
