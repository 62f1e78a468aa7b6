//! The live dashboard (`--ui`): one page, its snapshot, its server-sent events, and the six
//! commands, served by axum.
//!
//! - `GET /`: the page (`page.html`, embedded in the binary: no build step, nothing fetched
//!   from elsewhere).
//! - `GET /api/state`: everything the view holds, as JSON.
//! - `GET /api/events`: server-sent events, one per change (`device`, `reading`, `alert`,
//!   `command`, `refused`, `connection`). A page that falls behind by thousands of changes has
//!   its stream closed; the browser reconnects and loads the snapshot again.
//! - `POST /api/commands`: `{"org", "device", "command", "parameters"}`, checked exactly as the
//!   device will check it; `202 {"id"}`, the outcome follows as a `command` event.
//!
//! Bound to loopback by default. On any other address a token is required
//! ([`DashboardOptions::token`]): `?token=` on every request (an `EventSource` cannot send
//! headers) or `Authorization: Bearer`. Without a token, only requests whose `Host` is a
//! loopback name are answered, so that a web page whose name an attacker rebinds to 127.0.0.1
//! cannot read the dashboard or send commands (DNS rebinding); a command whose `Origin` is
//! another site is refused in any case, and no page may frame the dashboard.

mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use dese_protocol::{DeviceId, Message, MessageKind, OrgId, decode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

pub use view::LiveView;

use crate::Commander;

/// The page, with everything it needs inline.
const PAGE: &str = include_str!("page.html");

/// The largest command request accepted.
const BODY_LIMIT: usize = 16 * 1024;

/// Where and how the dashboard is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardOptions {
    /// The address to listen on (port 0: any free port; [`crate::ReferenceBackend::dashboard_addr`]
    /// tells which).
    pub addr: SocketAddr,
    /// The token every request must carry; required unless `addr` is a loopback address.
    pub token: Option<String>,
}

impl DashboardOptions {
    /// Loopback needs no token; any other address does, of at least 16 characters.
    pub fn check(&self) -> Result<(), String> {
        match &self.token {
            None if !self.addr.ip().is_loopback() => Err(format!(
                "the dashboard on {} is reachable from other machines: give it a token \
                 (--ui-token or DESE_UI_TOKEN), or bind it to 127.0.0.1",
                self.addr
            )),
            Some(token) if token.chars().count() < 16 => {
                Err("the dashboard's token must be at least 16 characters".to_string())
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone)]
struct App {
    view: Arc<LiveView>,
    commander: Commander,
    token: Option<Arc<str>>,
}

/// Binds the dashboard's listener (so that a taken port fails the start, not later) and
/// returns it with its router.
pub(crate) async fn bind(
    options: &DashboardOptions,
    view: Arc<LiveView>,
    commander: Commander,
) -> std::io::Result<(TcpListener, Router)> {
    let listener = TcpListener::bind(options.addr).await?;
    let app = App {
        view,
        commander,
        token: options.token.as_deref().map(Arc::from),
    };
    let router = Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/api/events", get(events))
        .route("/api/commands", post(command))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    Ok((listener, router))
}

/// Serves until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "the dashboard stopped");
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Every request passes here: the `Host` (without a token), the `Origin` of a command, the
/// token (with one); every answer gets headers that keep other sites out.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let mut response = match refusal(&app, &request) {
        Some((status, error)) => refuse(status, error.to_string()),
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The token may be in the page's address: never send it on.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a request is refused, if it is.
fn refusal(app: &App, request: &Request) -> Option<(StatusCode, &'static str)> {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match &app.token {
        None if !host.is_some_and(is_loopback_host) => {
            return Some((
                StatusCode::MISDIRECTED_REQUEST,
                "this dashboard answers to a loopback address only (127.0.0.1, [::1], localhost)",
            ));
        }
        None => {}
        Some(expected) => {
            let query = Query::<TokenQuery>::try_from_uri(request.uri()).ok();
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let given = query.as_ref().and_then(|q| q.token.as_deref()).or(bearer);
            if !given.is_some_and(|given| same(given.as_bytes(), expected.as_bytes())) {
                return Some((
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token (?token=...)",
                ));
            }
        }
    }
    if request.method() == Method::POST && !same_origin(headers, host) {
        return Some((
            StatusCode::FORBIDDEN,
            "a command must come from the dashboard's own page",
        ));
    }
    None
}

/// `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080` (any port, or none).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(ip, _)| ip),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A request without an `Origin` (a script, `curl`), or from the page's own origin.
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or_default();
    let shown = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    host.is_some_and(|host| shown == Some(host))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page() -> Response {
    let mut response = Html(PAGE).into_response();
    // Nothing but this page's own inline code and its own origin.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    response
}

/// The snapshot is copied under the view's lock and turned into JSON on a blocking thread:
/// ten thousand devices' histories are tens of megabytes, which neither the view's lock nor an
/// async worker should wait for.
async fn state(State(app): State<App>) -> Response {
    let snapshot = app.view.snapshot();
    match tokio::task::spawn_blocking(move || snapshot.into_json()).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn events(
    State(app): State<App>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    let updates = BroadcastStream::new(app.view.subscribe())
        // Fallen behind: end the stream; the page reconnects and loads the snapshot.
        .map_while(|update| update.ok())
        .map(|update| Ok(SseEvent::default().event(update.event).data(update.data)));
    Sse::new(updates).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
struct CommandRequest {
    org: String,
    device: String,
    command: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

fn refuse(status: StatusCode, error: String) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

async fn command(
    State(app): State<App>,
    body: Result<Json<CommandRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let org = match OrgId::parse(&request.org) {
        Ok(org) => org,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("org: {e}")),
    };
    let device = match DeviceId::parse(&request.device) {
        Ok(device) => device,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("device: {e}")),
    };
    if !dese_protocol::Action::NAMES.contains(&request.command.as_str()) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown command {:?}: expected one of {}",
                request.command,
                dese_protocol::Action::NAMES.join(", ")
            ),
        );
    }
    // Checked exactly as the device will check it: the command message is built and decoded.
    let mut message = json!({
        "command_id": "dashboard-check",
        "device_id": device.as_str(),
        "command": request.command,
        "timestamp": "2025-01-01T00:00:00Z",
    });
    if let Some(parameters) = request.parameters {
        message["parameters"] = Value::Object(parameters);
    }
    let topic = format!("devices/{org}/{device}/{}", MessageKind::Commands);
    let action = match decode(&topic, message.to_string().as_bytes()) {
        Ok(envelope) => match envelope.message {
            Message::Command(command) => command.action,
            _ => return refuse(StatusCode::BAD_REQUEST, "not a command".to_string()),
        },
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("{} would be refused by the device: {e}", request.command),
            );
        }
    };
    match app.commander.start(org, device, action).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "id": id.as_str() }))).into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_address_than_loopback_needs_a_long_token() {
        let on = |addr: &str, token: Option<&str>| DashboardOptions {
            addr: addr.parse().unwrap(),
            token: token.map(str::to_string),
        };
        assert!(on("127.0.0.1:8080", None).check().is_ok());
        assert!(on("[::1]:8080", None).check().is_ok());
        let open = on("0.0.0.0:8080", None).check().unwrap_err();
        assert!(open.contains("token"), "{open}");
        assert!(on("0.0.0.0:8080", Some("short")).check().is_err());
        assert!(
            on("0.0.0.0:8080", Some("a-token-of-24-characters"))
                .check()
                .is_ok()
        );
        assert!(is_loopback_host("127.0.0.1:8080"));
        assert!(is_loopback_host("[::1]:8080"));
        assert!(is_loopback_host("LOCALHOST:80"));
        assert!(is_loopback_host("127.0.0.2"));
        assert!(!is_loopback_host("evil.example:8080"));
        assert!(!is_loopback_host("127.0.0.1.evil.example"));
        assert!(!is_loopback_host("[::2]:80"));
        let with_origin = |origin: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
            headers
        };
        assert!(same_origin(&HeaderMap::new(), Some("127.0.0.1:8080")));
        assert!(same_origin(
            &with_origin("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        ));
        assert!(!same_origin(
            &with_origin("http://evil.example"),
            Some("127.0.0.1:8080")
        ));
        assert!(!same_origin(&with_origin("null"), Some("127.0.0.1:8080")));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
