//! Live updates: every Application change the server's watch sees, as Server-Sent Events
//! filtered by the list's query parameters and by RBAC, so no client needs to poll.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::api::{Server, count, error, unauthenticated};
use crate::query::{AppSummary, ListQuery, passes};

/// One change of one Application, or a hint to list again.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Change {
    /// Created or changed (its summary now).
    Upsert { application: AppSummary },
    /// Deleted (its last summary).
    Delete { application: AppSummary },
    /// The server's watch started over, or this client fell behind: list again.
    Resync,
}

/// Changes buffered per client before it is told to resync.
pub const BUFFER: usize = 4096;
/// Streams open at once, in all and per caller.
pub const MAX_STREAMS: usize = 2000;
pub const MAX_PER_CALLER: usize = 20;
/// How often an open stream's credential is checked again.
const REAUTH_EVERY: Duration = Duration::from_secs(60);

/// One open stream's state.
struct Subscriber {
    rx: broadcast::Receiver<Change>,
    server: Arc<Server>,
    who: crate::auth::Principal,
    q: ListQuery,
    headers: HeaderMap,
    checked: tokio::time::Instant,
    started: bool,
    _slot: Slot,
}

/// Open streams by caller.
static OPEN: std::sync::Mutex<Option<std::collections::HashMap<String, usize>>> =
    std::sync::Mutex::new(None);

/// A counted place among the open streams, given back when the stream ends.
struct Slot {
    subject: String,
}

impl Slot {
    fn take(subject: &str) -> Option<Self> {
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        let map = open.get_or_insert_with(Default::default);
        let total: usize = map.values().sum();
        let mine = map.get(subject).copied().unwrap_or(0);
        if total >= MAX_STREAMS || mine >= MAX_PER_CALLER {
            return None;
        }
        map.insert(subject.to_string(), mine + 1);
        Some(Self {
            subject: subject.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = open.as_mut()
            && let Some(n) = map.get_mut(&self.subject)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.subject);
            }
        }
    }
}

/// Streams open now (in all).
pub fn open_streams() -> usize {
    OPEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map_or(0, |m| m.values().sum())
}

/// `flotilla_server_streams_open`, read at scrape time.
#[derive(Debug)]
struct OpenStreams;

impl prometheus_client::collector::Collector for OpenStreams {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let g = prometheus_client::metrics::gauge::ConstGauge::new(open_streams() as i64);
        let m = encoder.encode_descriptor(
            "flotilla_server_streams_open",
            "Event streams (/api/v1/stream/applications) open now",
            None,
            g.metric_type(),
        )?;
        g.encode(m)
    }
}

/// Register the stream metrics.
pub fn register(registry: &mut prometheus_client::registry::Registry) {
    registry.register_collector(Box::new(OpenStreams));
}

pub fn channel() -> broadcast::Sender<Change> {
    broadcast::channel(BUFFER).0
}

async fn applications(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let who = match s.auth.authenticate(&headers).await {
        Ok(w) => w,
        Err(e) => return count(&s, "stream", unauthenticated(e)),
    };
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return count(&s, "stream", error(StatusCode::BAD_REQUEST, e.body_text())),
    };
    if let Err(e) = crate::query::validate(&q) {
        return count(&s, "stream", error(StatusCode::BAD_REQUEST, e.to_string()));
    }
    let Some(slot) = Slot::take(&who.subject) else {
        return count(
            &s,
            "stream",
            error(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {MAX_PER_CALLER} streams per caller and {MAX_STREAMS} in all"),
            ),
        );
    };
    let state = Subscriber {
        rx: s.changes.subscribe(),
        server: s.clone(),
        who,
        q,
        headers,
        checked: tokio::time::Instant::now(),
        started: false,
        _slot: slot,
    };
    let events = futures::stream::unfold(state, |mut st| async move {
        // First, a resync: whatever changed between the client's list and this subscription.
        if !st.started {
            st.started = true;
            let ev = Event::default()
                .event("resync")
                .data(serde_json::to_string(&Change::Resync).unwrap_or_default());
            return Some((Ok::<_, Infallible>(ev), st));
        }
        loop {
            let recheck = st.checked + REAUTH_EVERY;
            let change = tokio::select! {
                r = st.rx.recv() => match r {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => Change::Resync,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep_until(recheck) => {
                    // A revoked, expired or deleted credential ends the stream.
                    if st.server.auth.authenticate(&st.headers).await.is_err() {
                        return None;
                    }
                    st.checked = tokio::time::Instant::now();
                    continue;
                }
            };
            let show = match &change {
                Change::Upsert { application: a } | Change::Delete { application: a } => {
                    passes(a, &st.q).unwrap_or(false)
                        && st.server.can_app(
                            &st.who,
                            "get",
                            &crate::rbac::AppObject::new(
                                &st.server.namespace,
                                &a.project,
                                &a.namespace,
                                &a.name,
                            ),
                        )
                }
                Change::Resync => true,
            };
            if show {
                let name = match &change {
                    Change::Upsert { .. } => "upsert",
                    Change::Delete { .. } => "delete",
                    Change::Resync => "resync",
                };
                let data = serde_json::to_string(&change).unwrap_or_default();
                let ev = Event::default().event(name).data(data);
                return Some((Ok::<_, Infallible>(ev), st));
            }
        }
    });
    count(
        &s,
        "stream",
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    )
}

pub fn routes() -> axum::Router<Arc<Server>> {
    axum::Router::new().route(
        "/api/v1/stream/applications",
        axum::routing::get(applications),
    )
}

pub fn openapi_paths() -> Value {
    json!({
        "/api/v1/stream/applications": {"get": {
            "summary": "Server-Sent Events of application changes (event `upsert` or `delete` with {type, application: AppSummary}; `resync`: list again). Takes the list's filters.",
            "responses": {"200": {"description": "text/event-stream"}, "400": {"description": "bad filter"}, "401": {"description": "unauthenticated"}}}}
    })
}
