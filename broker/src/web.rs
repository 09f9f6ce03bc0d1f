//! The web console (port 8161, as ActiveMQ's) and the monitoring API.
//!
//! Server-rendered HTML with no external assets and no JavaScript: overview, queues (purge,
//! delete, browse, send a test message), topics, durable subscribers (delete) and
//! connections. The same data as JSON under `/api/...`, and `/metrics` in Prometheus' text
//! format. Everything needs a user of the broker's config: HTTP Basic, or the login form's
//! session cookie. Every change of state is a POST carrying the CSRF token of the page it came
//! from; a request without credentials gets 401, a POST without the token 403.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use broker_core::{Body, Destination, DestinationStats, Outgoing, SubscriptionKey, Value};
use parking_lot::Mutex;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Broker;
use crate::users::Users;

/// Messages shown by a browse page.
const BROWSE_MAX: usize = 100;

struct App {
    broker: Arc<Broker>,
    users: Users,
    /// Session cookie → (user, CSRF token).
    sessions: Mutex<HashMap<String, (String, String)>>,
    /// The CSRF token of Basic-authenticated pages (random per process).
    basic_csrf: String,
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        // Without /dev/urandom fall back to the clock and the pid: unguessable enough for a
        // console bound to localhost, and logged.
        warn!("no /dev/urandom ({e}); console tokens use the clock");
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The web console's listener.
pub struct WebServer {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebServer {
    pub async fn start(broker: Arc<Broker>, bind: &str) -> Result<WebServer> {
        let users = Users::from_config(&broker.config().users);
        let app = Arc::new(App {
            broker,
            users,
            sessions: Mutex::new(HashMap::new()),
            basic_csrf: random_token(),
        });
        let router = Router::new()
            .route("/", get(overview))
            .route("/login", get(login_page).post(login))
            .route("/logout", post(logout))
            .route("/queues", get(queues))
            .route("/queues/browse", get(browse))
            .route("/queues/send", post(send))
            .route("/queues/confirm", get(confirm))
            .route("/queues/purge", post(purge))
            .route("/queues/delete", post(delete_queue))
            .route("/topics", get(topics))
            .route("/subscribers", get(subscribers))
            .route("/subscribers/delete", post(delete_subscriber))
            .route("/connections", get(connections))
            .route("/api/overview", get(api_overview))
            .route("/api/queues", get(api_queues))
            .route("/api/topics", get(api_topics))
            .route("/api/subscribers", get(api_subscribers))
            .route("/api/connections", get(api_connections))
            .route("/metrics", get(metrics))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen for the web console on {bind}"))?;
        let addr = listener.local_addr()?;
        info!("web console on http://{addr}/");
        let (shutdown, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                warn!("web console: {e}");
            }
        });
        Ok(WebServer {
            addr,
            shutdown,
            task,
        })
    }

    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

struct Login {
    user: String,
    csrf: String,
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "console")
        .map(|(_, v)| v.to_owned())
}

impl App {
    fn login(&self, headers: &HeaderMap) -> Option<Login> {
        if let Some(sid) = cookie_session(headers)
            && let Some((user, csrf)) = self.sessions.lock().get(&sid).cloned()
        {
            return Some(Login { user, csrf });
        }
        let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let encoded = auth.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        if self.users.check(user, password) {
            Some(Login {
                user: user.to_owned(),
                csrf: self.basic_csrf.clone(),
            })
        } else {
            warn!(user, "web console: wrong credentials");
            None
        }
    }
}

/// The user of a request that carries valid credentials (the login form's session cookie, or
/// HTTP Basic). As an extractor it turns a request without them away before the handler runs,
/// with the 401 its audience `R` expects: the login form for pages ([`Page`]), a Basic challenge
/// for the JSON API and metrics ([`Api`]). Put it after a handler's `Query`, so that a malformed
/// query is still a 400 whoever asks.
struct AuthenticatedUser<R = Page>(Login, PhantomData<R>);

/// Who a 401 is for.
trait Audience {
    fn unauthorized() -> Response;
}

/// A person at a browser: a 401 shows the login form.
struct Page;

impl Audience for Page {
    fn unauthorized() -> Response {
        unauthorized_page()
    }
}

/// A program (the JSON API, a metrics scraper): a 401 asks for HTTP Basic.
struct Api;

impl Audience for Api {
    fn unauthorized() -> Response {
        unauthorized_api()
    }
}

impl<R: Audience> FromRequestParts<Arc<App>> for AuthenticatedUser<R> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> std::result::Result<Self, Response> {
        app.login(&parts.headers)
            .map(|l| AuthenticatedUser(l, PhantomData))
            .ok_or_else(R::unauthorized)
    }
}

/// A form that changes state and so carries the CSRF token of the page it came from.
trait CsrfToken {
    fn csrf(&self) -> &str;
}

/// Every state-changing form keeps its token in a field `csrf`.
macro_rules! csrf_token {
    ($($form:ty),*) => {
        $(impl CsrfToken for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}

/// A state change: the form, from an [`AuthenticatedUser`], carrying the token of a page this
/// user was given. Checked in this order: the form parses (axum's form rejection), the
/// credentials (401 with the login form), the token (403).
struct AuthorizedForm<T>(Login, T);

impl<T> FromRequest<Arc<App>> for AuthorizedForm<T>
where
    T: DeserializeOwned + CsrfToken + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> std::result::Result<Self, Response> {
        let headers = req.headers().clone();
        let Form(form) = Form::<T>::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let l = app.login(&headers).ok_or_else(Page::unauthorized)?;
        if form.csrf() != l.csrf {
            return Err(forbidden());
        }
        Ok(AuthorizedForm(l, form))
    }
}

fn unauthorized_api() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "credentials required\n").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"broker\""),
    );
    r
}

fn unauthorized_page() -> Response {
    (StatusCode::UNAUTHORIZED, Html(login_form(None))).into_response()
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "body{font-family:sans-serif;margin:0;color:#222}header{background:#1d3557;color:#fff;padding:.6em 1em}\
header a{color:#fff;margin-right:1.2em;text-decoration:none}main{padding:1em}table{border-collapse:collapse;margin:.5em 0}\
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}th{background:#eef}td.n{text-align:right}\
form.inline{display:inline}.msg{background:#f6f6f6;border:1px solid #ddd;padding:.5em;margin:.5em 0}";

fn page(title: &str, login: Option<&Login>, body: &str) -> Html<String> {
    let nav = match login {
        Some(l) => format!(
            "<a href=\"/\">Overview</a><a href=\"/queues\">Queues</a><a href=\"/topics\">Topics</a>\
             <a href=\"/subscribers\">Subscribers</a><a href=\"/connections\">Connections</a>\
             <form class=\"inline\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button>Log out {}</button></form>",
            escape(&l.csrf),
            escape(&l.user)
        ),
        None => String::new(),
    };
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{} – broker</title><style>{STYLE}</style></head>\
         <body><header><strong>broker</strong> &nbsp; {nav}</header><main><h1>{}</h1>{body}</main></body></html>",
        escape(title),
        escape(title)
    ))
}

fn login_form(error: Option<&str>) -> String {
    let err = error.map_or(String::new(), |e| {
        format!("<p class=\"msg\">{}</p>", escape(e))
    });
    page(
        "Log in",
        None,
        &format!(
            "{err}<form method=\"post\" action=\"/login\"><p><label>User <input name=\"username\" id=\"username\"></label></p>\
             <p><label>Password <input name=\"password\" id=\"password\" type=\"password\"></label></p>\
             <p><button id=\"login\">Log in</button></p></form>"
        ),
    )
    .0
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login_page() -> Html<String> {
    Html(login_form(None))
}

async fn login(State(app): State<Arc<App>>, Form(f): Form<LoginForm>) -> Response {
    if !app.users.check(&f.username, &f.password) {
        warn!(user = %f.username, "web console: wrong credentials");
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_form(Some("Wrong user name or password."))),
        )
            .into_response();
    }
    let sid = random_token();
    let mut sessions = app.sessions.lock();
    if sessions.len() > 10_000 {
        sessions.clear();
    }
    sessions.insert(sid.clone(), (f.username, random_token()));
    drop(sessions);
    let mut r = Redirect::to("/queues").into_response();
    if let Ok(v) =
        HeaderValue::from_str(&format!("console={sid}; HttpOnly; SameSite=Strict; Path=/"))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    _: AuthorizedForm<CsrfOnly>,
) -> Response {
    if let Some(sid) = cookie_session(&headers) {
        app.sessions.lock().remove(&sid);
    }
    Redirect::to("/login").into_response()
}

fn error_page(login: &Login, e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Unavailable",
            Some(login),
            &format!("<p class=\"msg\">{}</p>", escape(&e.to_string())),
        ),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Data

fn uptime(app: &App) -> u64 {
    app.broker
        .serving_since_ms()
        .map(|s| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            (now - s).max(0) as u64 / 1000
        })
        .unwrap_or(0)
}

async fn overview_json(app: &App) -> serde_json::Value {
    let b = &app.broker;
    json!({
        "name": b.config().broker.name,
        "version": env!("CARGO_PKG_VERSION"),
        "state": b.state().to_string(),
        "uptime_seconds": uptime(app),
        "store": b.store_kind().unwrap_or("none"),
        "store_size_bytes": b.store_size().await.unwrap_or(0),
        "store_writable": b.store_status().is_ok_and(|s| s.writable),
        "store_status": store_status_line(b),
        "store_metrics": b.store_metrics().unwrap_or_default().into_iter().collect::<HashMap<_, _>>(),
        "memory": b.memory_usage().map(|(used, peak, limit)| json!({"used": used, "peak": peak, "limit": limit})).unwrap_or_default(),
    })
}

/// One line on whether the store takes writes, and why not.
fn store_status_line(b: &broker_core::Broker) -> String {
    let Ok(s) = b.store_status() else {
        return "not serving".into();
    };
    let held = if s.deferred_acks > 0 {
        format!("; {} acks held until it does", s.deferred_acks)
    } else {
        String::new()
    };
    match &s.refusal {
        None => "writable".into(),
        Some(r) => match &r.disk_full {
            Some(path) => format!(
                "DISK FULL at {}: persistent sends are refused; writes resume by themselves once space is freed{held}",
                path.display()
            ),
            None => format!(
                "WRITES REFUSED until the broker is restarted: {}{held}",
                r.reason
            ),
        },
    }
}

fn stats_json(s: &DestinationStats) -> serde_json::Value {
    json!({
        "name": s.destination.name.as_ref(),
        "pending": s.pending,
        "consumers": s.consumers,
        "enqueued": s.enqueued,
        "dequeued": s.dequeued,
        "expired": s.expired,
    })
}

// ---------------------------------------------------------------------------------------------
// Pages

async fn overview(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let o = overview_json(&app).await;
    let mut rows = String::new();
    for (k, label) in [
        ("name", "Broker"),
        ("version", "Version"),
        ("state", "State"),
        ("uptime_seconds", "Uptime (s)"),
        ("store", "Store"),
        ("store_size_bytes", "Store size on disk (bytes)"),
        ("store_status", "Store status"),
    ] {
        let v = match &o[k] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(
            rows,
            "<tr><th>{label}</th><td id=\"{k}\">{}</td></tr>",
            escape(&v)
        );
    }
    if let Some(m) = o["store_metrics"].as_object() {
        for (k, v) in m {
            let _ = write!(rows, "<tr><th>{}</th><td>{v}</td></tr>", escape(k));
        }
    }
    page("Overview", Some(&l), &format!("<table>{rows}</table>")).into_response()
}

async fn queues(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let stats = match app.broker.destination_stats().await {
        Ok(s) => s,
        Err(e) => return error_page(&l, e),
    };
    let csrf = escape(&l.csrf);
    let mut rows = String::new();
    for s in stats.iter().filter(|s| s.destination.is_queue()) {
        let name = escape(&s.destination.name);
        let q = url_encode(&s.destination.name);
        let _ = write!(
            rows,
            "<tr><td>{name}</td><td class=\"n\" id=\"pending-{name}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td><a href=\"/queues/browse?name={q}\" id=\"browse-{name}\">Browse</a> \
             <a href=\"/queues/confirm?action=purge&amp;name={q}\" id=\"purge-{name}\">Purge</a> \
             <a href=\"/queues/confirm?action=delete&amp;name={q}\" id=\"delete-{name}\">Delete</a></td></tr>",
            s.pending, s.consumers, s.enqueued, s.dequeued
        );
    }
    let body = format!(
        "<table><tr><th>Name</th><th>Pending</th><th>Consumers</th><th>Enqueued</th><th>Dequeued</th><th></th></tr>{rows}</table>\
         <h2>Send a message</h2><form method=\"post\" action=\"/queues/send\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>Queue <input name=\"name\" id=\"send-name\"></label></p>\
         <p><label>Body <textarea name=\"body\" id=\"send-body\" rows=\"3\" cols=\"40\"></textarea></label></p>\
         <p><label><input type=\"checkbox\" name=\"persistent\" value=\"true\" checked> Persistent</label></p>\
         <p><button id=\"send\">Send</button></p></form>"
    );
    page("Queues", Some(&l), &body).into_response()
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

async fn browse(
    State(app): State<Arc<App>>,
    Query(q): Query<NameQuery>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let messages = match app.broker.browse(&q.name, BROWSE_MAX).await {
        Ok(m) => m,
        Err(e) => return error_page(&l, e),
    };
    let mut body = format!(
        "<p>The first {} message(s), without consuming them.</p>",
        messages.len()
    );
    for m in &messages {
        let mut props = String::new();
        for (k, v) in &m.properties {
            let _ = write!(
                props,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(k),
                escape(&value_text(v))
            );
        }
        let _ = write!(
            body,
            "<div class=\"msg\"><table><tr><th>Message id</th><td>{}</td></tr><tr><th>Priority</th><td>{}</td></tr>\
             <tr><th>Persistent</th><td>{}</td></tr><tr><th>Timestamp</th><td>{}</td></tr><tr><th>Expiration</th><td>{}</td></tr>\
             <tr><th>Redeliveries</th><td>{}</td></tr>{props}</table><pre class=\"body\">{}</pre></div>",
            escape(&m.id.to_string()),
            m.priority,
            m.persistent,
            m.timestamp,
            m.expiration,
            m.redelivery_count,
            escape(&body_text(&m.body))
        );
    }
    page(&format!("Browse {}", q.name), Some(&l), &body).into_response()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bytes(b) => format!("<{} bytes>", b.len()),
        other => format!("{other:?}"),
    }
}

fn body_text(b: &Body) -> String {
    match b {
        Body::Text(t) => t.clone(),
        Body::Bytes(b) => match std::str::from_utf8(b) {
            Ok(t) => t.to_owned(),
            Err(_) => format!("<{} bytes>", b.len()),
        },
        Body::Empty => String::new(),
        other => format!("{other:?}"),
    }
}

#[derive(Deserialize)]
struct SendForm {
    csrf: String,
    name: String,
    body: String,
    persistent: Option<String>,
}

async fn send(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, f): AuthorizedForm<SendForm>,
) -> Response {
    if f.name.trim().is_empty() {
        return error_page(&l, "a queue name is required");
    }
    let out = Outgoing::text(f.body).persistent(f.persistent.as_deref() == Some("true"));
    match app
        .broker
        .send(Destination::queue(f.name.trim()), out)
        .await
    {
        Ok(_) => Redirect::to("/queues").into_response(),
        Err(e) => error_page(&l, e),
    }
}

#[derive(Deserialize)]
struct ConfirmQuery {
    action: String,
    name: String,
}

async fn confirm(
    Query(q): Query<ConfirmQuery>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let action = match q.action.as_str() {
        "purge" => "purge",
        "delete" => "delete",
        _ => return (StatusCode::BAD_REQUEST, "unknown action\n").into_response(),
    };
    let what = if action == "purge" {
        "delete every message of"
    } else {
        "delete, with its messages,"
    };
    let body = format!(
        "<p>Really {what} the queue <strong>{}</strong>?</p><form method=\"post\" action=\"/queues/{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"name\" value=\"{}\">\
         <button id=\"confirm\">Yes, {action}</button> <a href=\"/queues\">Cancel</a></form>",
        escape(&q.name),
        escape(&l.csrf),
        escape(&q.name)
    );
    page("Confirm", Some(&l), &body).into_response()
}

#[derive(Deserialize)]
struct NameForm {
    csrf: String,
    name: String,
}

async fn purge(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, f): AuthorizedForm<NameForm>,
) -> Response {
    match app.broker.purge(&f.name).await {
        Ok(n) => {
            info!(user = %l.user, queue = %f.name, purged = n, "web console: purged");
            Redirect::to("/queues").into_response()
        }
        Err(e) => error_page(&l, e),
    }
}

async fn delete_queue(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, f): AuthorizedForm<NameForm>,
) -> Response {
    match app.broker.delete_queue(&f.name).await {
        Ok(()) => {
            info!(user = %l.user, queue = %f.name, "web console: deleted");
            Redirect::to("/queues").into_response()
        }
        Err(e) => error_page(&l, e),
    }
}

async fn topics(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let stats = match app.broker.destination_stats().await {
        Ok(s) => s,
        Err(e) => return error_page(&l, e),
    };
    let mut rows = String::new();
    for s in stats
        .iter()
        .filter(|s| s.destination.is_topic() && s.subscription.is_none())
    {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&s.destination.name),
            s.pending,
            s.consumers,
            s.enqueued,
            s.dequeued
        );
    }
    page(
        "Topics",
        Some(&l),
        &format!("<table><tr><th>Name</th><th>Kept for subscribers</th><th>Consumers</th><th>Enqueued</th><th>Dequeued</th></tr>{rows}</table>"),
    )
    .into_response()
}

async fn subscriber_rows(
    app: &App,
) -> broker_core::Result<Vec<(Destination, SubscriptionKey, Option<String>, u64, bool)>> {
    let stats = app.broker.destination_stats().await?;
    let subs = app.broker.durable_subscriptions().await?;
    Ok(subs
        .into_iter()
        .map(|(d, info)| {
            let s = stats
                .iter()
                .find(|s| s.destination == d && s.subscription.as_ref() == Some(&info.key));
            (
                d,
                info.key,
                info.selector,
                s.map_or(0, |s| s.pending),
                s.is_some_and(|s| s.consumers > 0),
            )
        })
        .collect())
}

async fn subscribers(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let subs = match subscriber_rows(&app).await {
        Ok(s) => s,
        Err(e) => return error_page(&l, e),
    };
    let mut rows = String::new();
    for (d, key, selector, pending, active) in subs {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{pending}</td><td>{}</td><td>\
             <form class=\"inline\" method=\"post\" action=\"/subscribers/delete\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"client_id\" value=\"{}\"><input type=\"hidden\" name=\"name\" value=\"{}\">\
             <button>Delete</button></form></td></tr>",
            escape(&key.client_id),
            escape(&key.name),
            escape(&d.name),
            escape(selector.as_deref().unwrap_or("")),
            if active { "active" } else { "offline" },
            escape(&l.csrf),
            escape(&key.client_id),
            escape(&key.name)
        );
    }
    page(
        "Durable subscribers",
        Some(&l),
        &format!("<table><tr><th>Client id</th><th>Name</th><th>Topic</th><th>Selector</th><th>Pending</th><th>State</th><th></th></tr>{rows}</table>"),
    )
    .into_response()
}

#[derive(Deserialize)]
struct SubscriberForm {
    csrf: String,
    client_id: String,
    name: String,
}

csrf_token!(CsrfOnly, SendForm, NameForm, SubscriberForm);

async fn delete_subscriber(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, f): AuthorizedForm<SubscriberForm>,
) -> Response {
    match app
        .broker
        .delete_durable_subscription(&SubscriptionKey::new(f.client_id, f.name))
        .await
    {
        Ok(()) => Redirect::to("/subscribers").into_response(),
        Err(e) => error_page(&l, e),
    }
}

async fn connections(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let conns = match app.broker.connections() {
        Ok(c) => c,
        Err(e) => return error_page(&l, e),
    };
    let mut rows = String::new();
    for c in conns {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&c.id),
            escape(c.client_id.as_deref().unwrap_or("")),
            escape(c.protocol.as_deref().unwrap_or("")),
            escape(c.remote.as_deref().unwrap_or("in process")),
            c.sessions,
            c.consumers
        );
    }
    page(
        "Connections",
        Some(&l),
        &format!("<table><tr><th>Id</th><th>Client id</th><th>Protocol</th><th>Remote address</th><th>Sessions</th><th>Consumers</th></tr>{rows}</table>"),
    )
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// JSON API and metrics

fn api_error(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": e.to_string()})),
    )
        .into_response()
}

async fn api_overview(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    axum::Json(overview_json(&app).await).into_response()
}

async fn api_destinations(app: &App, queues: bool) -> Response {
    match app.broker.destination_stats().await {
        Ok(s) => axum::Json(
            s.iter()
                .filter(|s| s.subscription.is_none() && s.destination.is_queue() == queues)
                .map(stats_json)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => api_error(e),
    }
}

async fn api_queues(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    api_destinations(&app, true).await
}

async fn api_topics(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    api_destinations(&app, false).await
}

async fn api_subscribers(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    match subscriber_rows(&app).await {
        Ok(rows) => axum::Json(
            rows.into_iter()
                .map(|(d, k, selector, pending, active)| {
                    json!({"topic": d.name.as_ref(), "client_id": k.client_id, "name": k.name,
                           "selector": selector, "pending": pending, "active": active})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => api_error(e),
    }
}

async fn api_connections(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    match app.broker.connections() {
        Ok(c) => axum::Json(
            c.into_iter()
                .map(|c| json!({"id": c.id, "client_id": c.client_id, "remote": c.remote, "protocol": c.protocol, "sessions": c.sessions, "consumers": c.consumers}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => api_error(e),
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    let b = &app.broker;
    let mut out = String::new();
    let serving = u8::from(b.state() == broker_core::BrokerState::Serving);
    let _ = writeln!(
        out,
        "# HELP broker_serving 1 while this broker is the master and serves.\n# TYPE broker_serving gauge\nbroker_serving {serving}"
    );
    let _ = writeln!(
        out,
        "# TYPE broker_uptime_seconds gauge\nbroker_uptime_seconds {}",
        uptime(&app)
    );
    let _ = writeln!(
        out,
        "# TYPE broker_store_size_bytes gauge\nbroker_store_size_bytes {}",
        b.store_size().await.unwrap_or(0)
    );
    let status = b.store_status().ok();
    let _ = writeln!(
        out,
        "# HELP broker_store_writable 1 while the store takes writes, 0 while it refuses them (a full disk) or the broker is not serving.\n# TYPE broker_store_writable gauge\nbroker_store_writable {}\n# HELP broker_store_deferred_acks Acks held while the store refuses writes.\n# TYPE broker_store_deferred_acks gauge\nbroker_store_deferred_acks {}\n# HELP broker_store_writes_resumed Times the store took writes again after refusing them.\n# TYPE broker_store_writes_resumed counter\nbroker_store_writes_resumed {}",
        u8::from(status.as_ref().is_some_and(|s| s.writable)),
        status.as_ref().map_or(0, |s| s.deferred_acks),
        status.as_ref().map_or(0, |s| s.resumed),
    );
    for (k, v) in b.store_metrics().unwrap_or_default() {
        let _ = writeln!(out, "# TYPE broker_store_{k} counter\nbroker_store_{k} {v}");
    }
    if let Ok((used, peak, limit)) = b.memory_usage() {
        let _ = writeln!(
            out,
            "# TYPE broker_memory_used_bytes gauge\nbroker_memory_used_bytes {used}\n# TYPE broker_memory_peak_bytes gauge\nbroker_memory_peak_bytes {peak}\n# TYPE broker_memory_limit_bytes gauge\nbroker_memory_limit_bytes {limit}"
        );
    }
    let _ = writeln!(
        out,
        "# TYPE broker_connections gauge\nbroker_connections {}",
        b.connections().map_or(0, |c| c.len())
    );
    let _ = writeln!(
        out,
        "# HELP broker_pipelined_bytes Message bytes in the connections' pipelining windows (sent, not yet on disk).\n# TYPE broker_pipelined_bytes gauge\nbroker_pipelined_bytes {}\n# HELP broker_pipelined_bytes_high_water The most there were at once.\n# TYPE broker_pipelined_bytes_high_water gauge\nbroker_pipelined_bytes_high_water {}",
        b.pipelined().bytes(),
        b.pipelined().high_water()
    );
    if let Ok(stats) = b.destination_stats().await {
        for (metric, kind) in [
            ("pending", "gauge"),
            ("consumers", "gauge"),
            ("enqueued", "counter"),
            ("dequeued", "counter"),
            ("expired", "counter"),
        ] {
            let _ = writeln!(out, "# TYPE broker_destination_{metric} {kind}");
            for s in &stats {
                let v = match metric {
                    "pending" => s.pending,
                    "consumers" => s.consumers,
                    "enqueued" => s.enqueued,
                    "dequeued" => s.dequeued,
                    _ => s.expired,
                };
                let sub = s.subscription.as_ref().map_or(String::new(), |k| {
                    format!(",subscription=\"{}\"", label(&k.to_string()))
                });
                let _ = writeln!(
                    out,
                    "broker_destination_{metric}{{destination=\"{}\"{sub}}} {v}",
                    label(&s.destination.to_string())
                );
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
