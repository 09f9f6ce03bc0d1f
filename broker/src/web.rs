//! The web console (port 8161, as ActiveMQ's) and the monitoring API.
//!
//! Server-rendered HTML with no external assets and no JavaScript: overview, queues (purge,
//! delete, browse, send a test message), topics, durable subscribers (delete) and
//! connections. The same data as JSON under `/api/...`, and `/metrics` in Prometheus' text
//! format. Everything needs a user of the broker's config: HTTP Basic, or the login form's
//! session cookie (`session.rs`: idle expiry, logout, a bounded number). Every change of state
//! is a POST carrying a CSRF token (`csrf.rs`) in its `csrf` field or an `X-CSRF-Token`
//! header; a request without credentials gets 401, a POST without the right token 403, and
//! nothing changes. Every response forbids framing and carries a Content-Security-Policy that
//! allows no script and no inline style. With `web_tls` the console is served over HTTPS
//! (`https.rs`) and its cookies are `Secure`.

mod csrf;
mod https;
mod session;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use broker_core::authorization::Operation;
use broker_core::{Body, Destination, DestinationStats, Outgoing, SubscriptionKey, Value};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use self::csrf::{Secrets, tokens_equal};
use self::session::{Clock, SessionUser, Sessions};
use crate::Broker;
use crate::users::Users;

/// Messages shown by a browse page.
const BROWSE_MAX: usize = 100;

/// The session cookie.
const SESSION_COOKIE: &str = "console";
/// The login form's double-submit cookie, sent back only to `/login`.
const LOGIN_COOKIE: &str = "console_login";
/// Where a client may put the CSRF token instead of the form's `csrf` field.
const CSRF_HEADER: &str = "x-csrf-token";

/// No script at all, styles only from `/console.css`, forms only to the console, never in a
/// frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'none'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const STYLE_SHEET: &str = include_str!("web/console.css");

struct App {
    broker: Arc<Broker>,
    users: Arc<Users>,
    sessions: Sessions,
    clock: Arc<Clock>,
    secrets: Secrets,
    /// Served over HTTPS: cookies get `Secure`.
    tls: bool,
}

/// The web console's listener.
pub struct WebServer {
    pub addr: SocketAddr,
    /// Served over HTTPS (`web_tls`).
    pub tls: bool,
    clock: Arc<Clock>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebServer {
    /// Serves the console on `bind`, over HTTPS when the broker's config sets `web_tls`.
    pub async fn start(broker: Arc<Broker>, bind: &str) -> Result<WebServer> {
        let t = broker.config().transports.clone();
        let acceptor = if t.web_tls {
            let (Some(cert), Some(key)) = (&t.tls_certificate, &t.tls_key) else {
                anyhow::bail!("transports.web_tls needs tls_certificate and tls_key");
            };
            Some(crate::tls::acceptor(cert, key)?)
        } else {
            None
        };
        let users = Arc::new(broker.config().users());
        let clock = Arc::new(Clock::default());
        let app = Arc::new(App {
            broker,
            users,
            sessions: Sessions::new(
                Duration::from_secs(t.web_session_idle_secs),
                t.web_max_sessions,
            ),
            clock: Arc::clone(&clock),
            secrets: Secrets::new().context("web console secrets")?,
            tls: acceptor.is_some(),
        });
        let router = Router::new()
            .route("/", get(overview))
            .route("/console.css", get(style_sheet))
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
            .route("/scheduled", get(scheduled))
            .route("/scheduled/cancel", post(cancel_scheduled))
            .route("/connections", get(connections))
            .route("/api/csrf", get(api_csrf))
            .route("/api/overview", get(api_overview))
            .route("/api/queues", get(api_queues))
            .route("/api/topics", get(api_topics))
            .route("/api/subscribers", get(api_subscribers))
            .route("/api/connections", get(api_connections))
            .route("/api/scheduled", get(api_scheduled))
            .route("/metrics", get(metrics))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen for the web console on {bind}"))?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let tls = acceptor.is_some();
        let task = match acceptor {
            Some(acceptor) => {
                info!("web console on https://{addr}/");
                let listener = https::TlsListener::new(listener, acceptor)?;
                tokio::spawn(serve(listener, router, rx))
            }
            None => {
                info!("web console on http://{addr}/");
                tokio::spawn(serve(listener, router, rx))
            }
        };
        Ok(WebServer {
            addr,
            tls,
            clock,
            shutdown,
            task,
        })
    }

    /// The console's address as a URL, `http://` or `https://`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Moves the clock sessions age by forward: lets a test see a session expire without
    /// waiting for it.
    #[doc(hidden)]
    pub fn advance_session_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn serve<L>(listener: L, router: Router, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let stop = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        warn!("web console: {e}");
    }
}

/// On every response, errors and redirects included: no framing (clickjacking), the
/// Content-Security-Policy, no content sniffing, no referrer, and no caching of pages that
/// carry tokens or broker data.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn style_sheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE_SHEET,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Authentication

struct Login {
    user: String,
    /// The token this user's POSTs must carry.
    csrf: String,
    /// The session id, for a login through the form.
    session: Option<String>,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl App {
    /// Basic credentials are checked as a protocol login is ([`Users::authenticate`]): off
    /// the async workers, and a wrong password answered late.
    async fn login(&self, headers: &HeaderMap) -> Option<Login> {
        if let Some(sid) = cookie(headers, SESSION_COOKIE)
            && let Some(SessionUser { user, csrf }) = self.sessions.touch(&sid, self.clock.now())
        {
            return Some(Login {
                user,
                csrf,
                session: Some(sid),
            });
        }
        let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let encoded = auth.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        if self.users.authenticate(user, password).await.is_some() {
            Some(Login {
                user: user.to_owned(),
                csrf: self.secrets.basic_token(user),
                session: None,
            })
        } else {
            warn!(user, "web console: wrong credentials");
            None
        }
    }

    /// A cookie with the console's attributes: never readable by script, never sent on a
    /// cross-site request, and only over HTTPS when the console is served so.
    fn cookie(&self, name: &str, value: &str, path: &str, max_age: Option<u64>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
        if self.tls {
            c.push_str("; Secure");
        }
        if let Some(s) = max_age {
            let _ = write!(c, "; Max-Age={s}");
        }
        // Names and paths are constants and values URL-safe base64: always a valid header.
        HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static(""))
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
    fn unauthorized(app: &App) -> Response;
}

/// A person at a browser: a 401 shows the login form.
struct Page;

impl Audience for Page {
    fn unauthorized(app: &App) -> Response {
        login_response(app, StatusCode::UNAUTHORIZED, None)
    }
}

/// A program (the JSON API, a metrics scraper): a 401 asks for HTTP Basic.
struct Api;

impl Audience for Api {
    fn unauthorized(_: &App) -> Response {
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
            .await
            .map(|l| AuthenticatedUser(l, PhantomData))
            .ok_or_else(|| R::unauthorized(app))
    }
}

/// Where a POST's token may be, when it is not in the `X-CSRF-Token` header.
#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// A state change: a form from an [`AuthenticatedUser`], carrying this user's CSRF token (in
/// the form's `csrf` field or the `X-CSRF-Token` header). Checked in this order, before the
/// handler can change anything: the credentials (401 with the login form), the token (403),
/// then the form's own fields (axum's 422).
struct AuthorizedForm<T>(Login, T);

impl<T> FromRequest<Arc<App>> for AuthorizedForm<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> std::result::Result<Self, Response> {
        let l = app
            .login(req.headers())
            .await
            .ok_or_else(|| Page::unauthorized(app))?;
        let header_token = req
            .headers()
            .get(HeaderName::from_static(CSRF_HEADER))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Bytes::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let token = header_token.or_else(|| {
            serde_urlencoded::from_bytes::<CsrfField>(&body)
                .ok()
                .and_then(|f| f.csrf)
        });
        if !token.is_some_and(|t| tokens_equal(&t, &l.csrf)) {
            warn!(user = %l.user, "web console: a POST without the right CSRF token refused");
            return Err(forbidden());
        }
        let form = serde_urlencoded::from_bytes::<T>(&body).map_err(|e| {
            (StatusCode::UNPROCESSABLE_ENTITY, format!("bad form: {e}\n")).into_response()
        })?;
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

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    warn!("web console: {e}");
    (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
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

fn page(title: &str, login: Option<&Login>, body: &str) -> Html<String> {
    let nav = match login {
        Some(l) => format!(
            "<a href=\"/\">Overview</a><a href=\"/queues\">Queues</a><a href=\"/topics\">Topics</a>\
             <a href=\"/subscribers\">Subscribers</a><a href=\"/scheduled\">Scheduled</a><a href=\"/connections\">Connections</a>\
             <form class=\"inline\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button id=\"logout\">Log out {}</button></form>",
            escape(&l.csrf),
            escape(&l.user)
        ),
        None => String::new(),
    };
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{} – broker</title>\
         <link rel=\"stylesheet\" href=\"/console.css\"></head>\
         <body><header><strong>broker</strong> &nbsp; {nav}</header><main><h1>{}</h1>{body}</main></body></html>",
        escape(title),
        escape(title)
    ))
}

/// The login form with a fresh token, and the cookie it must come back with.
fn login_response(app: &App, status: StatusCode, message: Option<&str>) -> Response {
    let token = match app.secrets.login_token() {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    let msg = message.map_or(String::new(), |m| {
        format!("<p class=\"msg\">{}</p>", escape(m))
    });
    let body = page(
        "Log in",
        None,
        &format!(
            "{msg}<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <p><label>User <input name=\"username\" id=\"username\"></label></p>\
             <p><label>Password <input name=\"password\" id=\"password\" type=\"password\"></label></p>\
             <p><button id=\"login\">Log in</button></p></form>",
            escape(&token)
        ),
    );
    let mut r = (status, body).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        app.cookie(LOGIN_COOKIE, &token, "/login", None),
    );
    r
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login_page(State(app): State<Arc<App>>) -> Response {
    login_response(&app, StatusCode::OK, None)
}

/// The login form's token is checked before the password, so that a cross-site page can
/// neither log a browser in (login CSRF) nor use it to try passwords.
async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let signed =
        cookie(&headers, LOGIN_COOKIE).is_some_and(|c| app.secrets.login_token_valid(&c, &f.csrf));
    if !signed {
        warn!("web console: a login without the form's token refused");
        return login_response(
            &app,
            StatusCode::FORBIDDEN,
            Some("The login form had expired; please log in again."),
        );
    }
    if app
        .users
        .authenticate(&f.username, &f.password)
        .await
        .is_none()
    {
        warn!(user = %f.username, "web console: wrong credentials");
        return login_response(
            &app,
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password."),
        );
    }
    // A new id at every login: an id planted in the browser before it (session fixation) is
    // never one the broker knows.
    let (sid, csrf) = match (app.secrets.random_token(), app.secrets.random_token()) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => return unavailable(e),
    };
    app.sessions.insert(
        sid.clone(),
        SessionUser {
            user: f.username,
            csrf,
        },
        app.clock.now(),
    );
    let mut r = Redirect::to("/queues").into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        app.cookie(SESSION_COOKIE, &sid, "/", None),
    );
    // The login form's token has served its purpose.
    h.append(
        header::SET_COOKIE,
        app.cookie(LOGIN_COOKIE, "", "/login", Some(0)),
    );
    r
}

#[derive(Deserialize)]
struct NoFields {}

/// Forgets the session on the broker, so its cookie is refused even if replayed, and asks the
/// browser to drop it. (An HTTP Basic client has nothing to forget: its browser keeps sending
/// the credentials until it is closed.)
async fn logout(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, _): AuthorizedForm<NoFields>,
) -> Response {
    let mut r = Redirect::to("/login").into_response();
    if let Some(sid) = &l.session {
        app.sessions.remove(sid);
        info!(user = %l.user, "web console: logged out");
        r.headers_mut().append(
            header::SET_COOKIE,
            app.cookie(SESSION_COOKIE, "", "/", Some(0)),
        );
    }
    r
}

/// Refuses `op` on `destination` unless the user's `[[authorization]]` grants it: `Some` 403
/// naming the user, the operation and the destination (logged at WARN by the check), and
/// nothing done.
fn refusal(app: &App, login: &Login, op: Operation, destination: &Destination) -> Option<Response> {
    let temporary = app.broker.is_temporary(destination);
    let checked = match app.users.subject(&login.user) {
        Some(s) => s
            .check(op, destination, temporary)
            .map_err(|e| e.to_string()),
        None => Err(format!("User {} is unknown", login.user)),
    };
    checked.err().map(|message| {
        (
            StatusCode::FORBIDDEN,
            page(
                "Not authorized",
                Some(login),
                &format!("<p class=\"msg\">{}</p>", escape(&message)),
            ),
        )
            .into_response()
    })
}

/// Whether the console shows this user its action buttons: only to a user with `admin` on
/// some destination (a read-only user sees the pages only; the actions are refused
/// server-side anyway).
/// A test of whether `user` may read a destination (consume or browse it): the read pages and
/// the JSON API list only those destinations, as a user cannot learn of queues they could not
/// use.
fn reader(app: &App, user: &str) -> impl Fn(&Destination) -> bool {
    let subject = app.users.subject(user);
    let broker = Arc::clone(&app.broker);
    move |d| {
        subject
            .as_ref()
            .is_some_and(|s| s.allows(Operation::Read, d, broker.is_temporary(d)))
    }
}

/// `stats` without the destinations `user` may not read.
fn readable(
    app: &App,
    user: &str,
    stats: Vec<broker_core::DestinationStats>,
) -> Vec<broker_core::DestinationStats> {
    let may_read = reader(app, user);
    stats
        .into_iter()
        .filter(|s| may_read(&s.destination))
        .collect()
}

fn shows_actions(app: &App, login: &Login) -> bool {
    app.users
        .subject(&login.user)
        .is_some_and(|s| s.is_admin_anywhere())
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
        "store_usage": b.store_usage().map(|(used, limit)| json!({"used": used, "limit": limit})).unwrap_or_default(),
        "memory_percent": b.memory_usage().map(|(used, _, limit)| percent(used, limit)).unwrap_or(0),
        "store_percent": b.store_usage().map(|(used, limit)| percent(used, limit)).unwrap_or(0),
        "temp_usage": b.temp_usage().map(|(used, limit)| json!({"used": used, "limit": limit})).unwrap_or_default(),
        "temp_percent": b.temp_usage().map(|(used, limit)| percent(used, limit)).unwrap_or(0),
        "network_bridges": b.network().bridges(),
        "network_messages_received": b.network().received(),
    })
}

/// `used` as a whole percentage of `limit`.
fn percent(used: u64, limit: u64) -> u64 {
    used.saturating_mul(100).checked_div(limit).unwrap_or(0)
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
        ("memory_percent", "Memory used (% of limits.memory_bytes)"),
        ("store_percent", "Store used (% of limits.store_bytes)"),
        ("temp_percent", "Temp store used (% of limits.temp_bytes)"),
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
    for n in app.broker.network().bridges() {
        let state = match (&n.remote_broker, n.connected) {
            (Some(r), true) => format!("connected to {r}"),
            _ => "connecting".to_owned(),
        };
        let _ = write!(
            rows,
            "<tr><th>Network bridge {} to {}</th><td>{}; {} messages forwarded, {} taken back (duplex); {} destinations forwarded now</td></tr>",
            escape(&n.name),
            escape(&n.remote),
            escape(&state),
            n.forwarded,
            n.pulled,
            n.destinations
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
        Ok(s) => readable(&app, &l.user, s),
        Err(e) => return error_page(&l, e),
    };
    let csrf = escape(&l.csrf);
    let actions = shows_actions(&app, &l);
    let mut rows = String::new();
    for s in stats.iter().filter(|s| s.destination.is_queue()) {
        let name = escape(&s.destination.name);
        let q = url_encode(&s.destination.name);
        let buttons = if actions {
            format!(
                " <a href=\"/queues/confirm?action=purge&amp;name={q}\" id=\"purge-{name}\">Purge</a> \
                 <a href=\"/queues/confirm?action=delete&amp;name={q}\" id=\"delete-{name}\">Delete</a>"
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr><td>{name}</td><td class=\"n\" id=\"pending-{name}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td><a href=\"/queues/browse?name={q}\" id=\"browse-{name}\">Browse</a>{buttons}</td></tr>",
            s.pending, s.consumers, s.enqueued, s.dequeued
        );
    }
    let table = format!(
        "<table><tr><th>Name</th><th>Pending</th><th>Consumers</th><th>Enqueued</th><th>Dequeued</th><th></th></tr>{rows}</table>"
    );
    if !actions {
        return page("Queues", Some(&l), &table).into_response();
    }
    let body = format!(
        "{table}<h2>Send a message</h2><form method=\"post\" action=\"/queues/send\">\
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
    if let Some(r) = refusal(
        &app,
        &l,
        Operation::Read,
        &Destination::queue(q.name.as_str()),
    ) {
        return r;
    }
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
    let destination = Destination::queue(f.name.trim());
    if let Some(r) = refusal(&app, &l, Operation::Write, &destination) {
        return r;
    }
    // As a producer's send: one that creates the queue needs `admin` on it too.
    let exists = match app.broker.destination_stats().await {
        Ok(stats) => stats.iter().any(|s| s.destination == destination),
        Err(e) => return error_page(&l, e),
    };
    if !exists && let Some(r) = refusal(&app, &l, Operation::Admin, &destination) {
        return r;
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
    name: String,
}

async fn purge(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, f): AuthorizedForm<NameForm>,
) -> Response {
    if let Some(r) = refusal(
        &app,
        &l,
        Operation::Admin,
        &Destination::queue(f.name.as_str()),
    ) {
        return r;
    }
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
    if let Some(r) = refusal(
        &app,
        &l,
        Operation::Admin,
        &Destination::queue(f.name.as_str()),
    ) {
        return r;
    }
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
        Ok(s) => readable(&app, &l.user, s),
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
    user: &str,
) -> broker_core::Result<Vec<(Destination, SubscriptionKey, Option<String>, u64, bool)>> {
    let stats = app.broker.destination_stats().await?;
    let subs = app.broker.durable_subscriptions().await?;
    let may_read = reader(app, user);
    Ok(subs
        .into_iter()
        .filter(|(d, _)| may_read(d))
        .map(|(d, info)| {
            let s = stats
                .iter()
                .find(|s| s.destination == d && s.subscription.as_ref() == Some(&info.key));
            (
                d,
                info.key,
                // As the client wrote it: the STOMP door's `convert_string_expressions:`
                // prefix (see broker_core::selector) is how it is stored, not what was asked.
                info.selector.map(|s| {
                    s.strip_prefix(broker_core::CONVERT_STRING_EXPRESSIONS)
                        .map_or(s.clone(), str::to_owned)
                }),
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
    let subs = match subscriber_rows(&app, &l.user).await {
        Ok(s) => s,
        Err(e) => return error_page(&l, e),
    };
    let actions = shows_actions(&app, &l);
    let mut rows = String::new();
    for (d, key, selector, pending, active) in subs {
        let button = if actions {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/subscribers/delete\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"client_id\" value=\"{}\"><input type=\"hidden\" name=\"name\" value=\"{}\">\
                 <button>Delete</button></form>",
                escape(&l.csrf),
                escape(&key.client_id),
                escape(&key.name)
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{pending}</td><td>{}</td><td>{button}</td></tr>",
            escape(&key.client_id),
            escape(&key.name),
            escape(&d.name),
            escape(selector.as_deref().unwrap_or("")),
            if active { "active" } else { "offline" },
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
    client_id: String,
    name: String,
}

async fn delete_subscriber(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, f): AuthorizedForm<SubscriberForm>,
) -> Response {
    let key = SubscriptionKey::new(f.client_id, f.name);
    // Deleting a subscription needs `admin` on its topic; an unknown one is left to the
    // delete's own answer.
    let topic = match app.broker.durable_subscriptions().await {
        Ok(subs) => subs.into_iter().find(|(_, i)| i.key == key).map(|(d, _)| d),
        Err(e) => return error_page(&l, e),
    };
    if let Some(topic) = topic
        && let Some(r) = refusal(&app, &l, Operation::Admin, &topic)
    {
        return r;
    }
    match app.broker.delete_durable_subscription(&key).await {
        Ok(()) => Redirect::to("/subscribers").into_response(),
        Err(e) => error_page(&l, e),
    }
}

/// The scheduled jobs (`AMQ_SCHEDULED_DELAY` and the others), soonest first, each with a
/// Cancel button for users with `admin` on its destination.
async fn scheduled(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser,
) -> Response {
    let jobs = match app.broker.scheduled_jobs().await {
        Ok(j) => j,
        Err(e) => return error_page(&l, e),
    };
    let actions = shows_actions(&app, &l);
    let mut rows = String::new();
    for j in jobs {
        let button = if actions {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/scheduled/cancel\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"id\" value=\"{}\"><button>Cancel</button></form>",
                escape(&l.csrf),
                escape(&j.id)
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{button}</td></tr>",
            escape(&j.id),
            escape(&j.destination.to_string()),
            j.due_ms,
            j.period_ms,
            j.repeats_left,
            escape(j.cron.as_deref().unwrap_or("")),
        );
    }
    page(
        "Scheduled messages",
        Some(&l),
        &format!("<table><tr><th>Job</th><th>Destination</th><th>Next due (ms since epoch)</th><th>Period (ms)</th><th>Repeats left</th><th>Cron</th><th></th></tr>{rows}</table>"),
    )
    .into_response()
}

#[derive(Deserialize)]
struct JobForm {
    id: String,
}

/// Cancels a scheduled job: `admin` on its destination, as deleting its messages would need.
async fn cancel_scheduled(
    State(app): State<Arc<App>>,
    AuthorizedForm(l, f): AuthorizedForm<JobForm>,
) -> Response {
    let job = match app.broker.scheduled_jobs().await {
        Ok(jobs) => jobs.into_iter().find(|j| j.id == f.id),
        Err(e) => return error_page(&l, e),
    };
    if let Some(job) = &job
        && let Some(r) = refusal(&app, &l, Operation::Admin, &job.destination)
    {
        return r;
    }
    match app.broker.cancel_scheduled(&f.id).await {
        Ok(_) => Redirect::to("/scheduled").into_response(),
        Err(e) => error_page(&l, e),
    }
}

async fn api_scheduled(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    match app.broker.scheduled_jobs().await {
        Ok(jobs) => axum::Json(
            jobs.into_iter()
                .map(|j| json!({"id": j.id, "destination": j.destination.to_string(), "due_ms": j.due_ms,
                                "period_ms": j.period_ms, "repeats_left": j.repeats_left, "cron": j.cron}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => api_error(e),
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

/// The CSRF token a client's POSTs must carry: an HTTP Basic client's (the same until the
/// broker restarts), or the session's. Only the console's own origin can read it.
async fn api_csrf(AuthenticatedUser(l, _): AuthenticatedUser<Api>) -> Response {
    axum::Json(json!({"token": l.csrf, "header": "X-CSRF-Token", "field": "csrf"})).into_response()
}

async fn api_overview(State(app): State<Arc<App>>, _: AuthenticatedUser<Api>) -> Response {
    axum::Json(overview_json(&app).await).into_response()
}

async fn api_destinations(app: &App, user: &str, queues: bool) -> Response {
    match app.broker.destination_stats().await {
        Ok(s) => axum::Json(
            readable(app, user, s)
                .iter()
                .filter(|s| s.subscription.is_none() && s.destination.is_queue() == queues)
                .map(stats_json)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => api_error(e),
    }
}

async fn api_queues(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser<Api>,
) -> Response {
    api_destinations(&app, &l.user, true).await
}

async fn api_topics(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser<Api>,
) -> Response {
    api_destinations(&app, &l.user, false).await
}

async fn api_subscribers(
    State(app): State<Arc<App>>,
    AuthenticatedUser(l, _): AuthenticatedUser<Api>,
) -> Response {
    match subscriber_rows(&app, &l.user).await {
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
        // The replicated store's figures (epoch, positions, slaves, lag) go up and down.
        let kind = if k.starts_with("replication_") {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(out, "# TYPE broker_store_{k} {kind}\nbroker_store_{k} {v}");
    }
    if let Ok((used, peak, limit)) = b.memory_usage() {
        let _ = writeln!(
            out,
            "# TYPE broker_memory_used_bytes gauge\nbroker_memory_used_bytes {used}\n# TYPE broker_memory_peak_bytes gauge\nbroker_memory_peak_bytes {peak}\n# TYPE broker_memory_limit_bytes gauge\nbroker_memory_limit_bytes {limit}\n# TYPE broker_memory_percent gauge\nbroker_memory_percent {}",
            percent(used, limit)
        );
    }
    if let Ok((used, limit)) = b.store_usage() {
        let _ = writeln!(
            out,
            "# HELP broker_store_usage_bytes Bytes of the messages the store keeps (limits.store_bytes).\n# TYPE broker_store_usage_bytes gauge\nbroker_store_usage_bytes {used}\n# TYPE broker_store_limit_bytes gauge\nbroker_store_limit_bytes {limit}\n# TYPE broker_store_percent gauge\nbroker_store_percent {}",
            percent(used, limit)
        );
    }
    if let Ok((used, limit)) = b.temp_usage() {
        let files = b.temp_files().unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP broker_temp_usage_bytes Bytes of non-persistent messages spooled to the temp store (limits.temp_bytes; 0 and a limit of 0 with spooling off).\n# TYPE broker_temp_usage_bytes gauge\nbroker_temp_usage_bytes {used}\n# TYPE broker_temp_limit_bytes gauge\nbroker_temp_limit_bytes {limit}\n# TYPE broker_temp_percent gauge\nbroker_temp_percent {}\n# TYPE broker_temp_files gauge\nbroker_temp_files {files}",
            percent(used, limit)
        );
    }
    let bridges = b.network().bridges();
    if !bridges.is_empty() {
        // One family per counter, one sample per bridge.
        type Sample = fn(&crate::network::status::BridgeView) -> u64;
        let families: [(&str, &str, &str, Sample); 3] = [
            (
                "broker_network_bridge_connected",
                "1 while the bridge is connected to its remote broker.",
                "gauge",
                |n| u64::from(n.connected),
            ),
            (
                "broker_network_bridge_forwarded",
                "Messages the bridge forwarded (stored by the remote broker).",
                "counter",
                |n| n.forwarded,
            ),
            (
                "broker_network_bridge_pulled",
                "Messages a duplex bridge took from its remote broker and stored here.",
                "counter",
                |n| n.pulled,
            ),
        ];
        for (name, help, kind, sample) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for n in &bridges {
                let _ = writeln!(
                    out,
                    "{name}{{bridge=\"{}\",remote=\"{}\"}} {}",
                    label(&n.name),
                    label(&n.remote),
                    sample(n)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP broker_network_received Messages received from other brokers' bridges.\n# TYPE broker_network_received counter\nbroker_network_received {}\n# HELP broker_network_duplicates Of those, sent again after a lost answer and not stored twice.\n# TYPE broker_network_duplicates counter\nbroker_network_duplicates {}",
        b.network().received(),
        b.network().duplicates()
    );
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
        let _ = writeln!(
            out,
            "# HELP broker_slow_consumer_dropped_total Messages dropped for slow non-durable topic subscribers over limits.max_pending_non_durable (the oldest of the lowest priority first).\n# TYPE broker_slow_consumer_dropped_total counter"
        );
        for s in stats
            .iter()
            .filter(|s| s.destination.is_topic() && s.subscription.is_none())
        {
            let _ = writeln!(
                out,
                "broker_slow_consumer_dropped_total{{destination=\"{}\"}} {}",
                label(&s.destination.to_string()),
                s.slow_consumer_dropped
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
