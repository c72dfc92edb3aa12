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
    let rx = s.changes.subscribe();
    let server = s.clone();
    let events = futures::stream::unfold(rx, move |mut rx| {
        let s = server.clone();
        let who = who.clone();
        let q = q.clone();
        async move {
            loop {
                let change = match rx.recv().await {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => Change::Resync,
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                let show = match &change {
                    Change::Upsert { application: a } | Change::Delete { application: a } => {
                        passes(a, &q).unwrap_or(false)
                            && s.can(
                                &who,
                                "applications",
                                "get",
                                &format!("{}/{}", a.project, a.name),
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
                    return Some((Ok::<_, Infallible>(ev), rx));
                }
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
