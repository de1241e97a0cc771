//! HTTP handlers: the two webhooks on the TLS listener; metrics and probes on the plain one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::state::AppState;
use crate::admission::{self, Decision, Request};
use crate::metrics::Webhook;
use crate::mutate::plan::Setting;
use crate::mutating::PodOutcome;

/// controller-runtime's cap: an UPDATE carries two objects of up to 3 MiB, plus 1 MiB.
pub const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;
/// An oversized body is read and discarded up to this size before the 413 goes out: closing
/// a socket with unread data resets it, and the client would never see the 413.
const MAX_DRAIN_BYTES: usize = 32 * 1024 * 1024;
/// Used when the API server sends no `?timeout=`; its own default is 10 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The API server's own ceiling for a webhook call.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn webhook_router(state: Arc<AppState>) -> Router {
    Router::new().route("/validate", post(validate)).route("/mutate", post(mutate)).with_state(state)
}

/// Once SIGTERM is received, every HTTP/1.1 answer of the webhooks carries `Connection: close`, so the API server
/// drops each keep-alive connection to this pod after reading an answer on it and dials the
/// Service again (by then without this pod). Otherwise its pooled connections keep coming here
/// until the shutdown delay ends and the server closes them: a review sent on one at that moment
/// fails with EOF, and the API server never retries a webhook POST (client-go v0.37.2
/// rest/request.go:1066-1077 retries GETs only), so a ConfigMap write failed (seen on the real
/// node, tests/e2e_node/faults.rs).
///
/// The two handlers call it rather than a middleware layer: `from_fn` boxes the handler's
/// future and clones the inner service on every request. The router's own 404 and 405 answers
/// go without it; the API server sends neither path nor method that gets one.
fn close_when_shutting_down(state: &AppState, version: Version, mut response: Response) -> Response {
    if version <= Version::HTTP_11 && state.readiness.shutting_down() {
        response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    response
}

pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

#[derive(Deserialize)]
struct TimeoutQuery {
    timeout: Option<String>,
}

/// The API server's `?timeout=10s`, at most 30 s; 10 s when absent or unreadable.
fn parse_timeout(query: &TimeoutQuery) -> Duration {
    query
        .timeout
        .as_deref()
        .and_then(super::timeouts::parse_duration)
        .filter(|timeout| !timeout.is_zero())
        .map_or(DEFAULT_REQUEST_TIMEOUT, |timeout| timeout.min(MAX_REQUEST_TIMEOUT))
}

/// The server's state, as a handler extracts it.
type Shared = State<Arc<AppState>>;

async fn validate(State(state): Shared, version: Version, Query(query): Query<TimeoutQuery>, body: Body) -> Response {
    let response = answer(&state, Webhook::Validate, &query, body, |state, request| async move {
        let reviewed = state.validating.review(&request, &state.watched()).await;
        state.metrics.record_config_checks(reviewed.checks);
        (reviewed.decision, LogFields::default())
    })
    .await;
    close_when_shutting_down(&state, version, response)
}

async fn mutate(State(state): Shared, version: Version, Query(query): Query<TimeoutQuery>, body: Body) -> Response {
    let response = answer(&state, Webhook::Mutate, &query, body, |state, request| async move {
        let reviewed = state.mutating.review(request, &state.pod_context(), state.cluster.as_ref()).await;
        state.metrics.record_pod(&reviewed.outcome);
        let PodOutcome { applied, config, .. } = reviewed.outcome;
        (reviewed.decision, LogFields { applied, config })
    })
    .await;
    close_when_shutting_down(&state, version, response)
}

/// What a webhook adds to its review's log line: the settings a patch applies, and the
/// config they come from.
#[derive(Default)]
struct LogFields {
    applied: Vec<Setting>,
    config: String,
}

/// Reads the body up to [`MAX_BODY_BYTES`]; past that, drains it and answers 413.
async fn read_body(body: Body) -> Result<Vec<u8>, Response> {
    use axum::body::HttpBody;
    use http_body_util::BodyExt;
    let mut body = body;
    // One allocation of the announced size (capped): growing a buffer re-copies it.
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(0).min(MAX_BODY_BYTES);
    let mut buffer = Vec::with_capacity(hint);
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err((StatusCode::BAD_REQUEST, "could not read the request body").into_response());
        };
        let Some(chunk) = frame.data_ref() else { continue };
        total += chunk.len();
        if total <= MAX_BODY_BYTES {
            buffer.extend_from_slice(chunk);
        } else {
            buffer = Vec::new();
            if total > MAX_DRAIN_BYTES {
                break;
            }
        }
    }
    if total > MAX_BODY_BYTES {
        let message = format!("request body is larger than {MAX_BODY_BYTES} bytes");
        return Err((StatusCode::PAYLOAD_TOO_LARGE, [(header::CONNECTION, "close")], message).into_response());
    }
    Ok(buffer)
}

/// Decodes the review, runs the webhook within the deadline, records metrics and a log line.
async fn answer<F, Fut>(
    state: &Arc<AppState>,
    webhook: Webhook,
    query: &TimeoutQuery,
    body: Body,
    decide: F,
) -> Response
where
    F: FnOnce(Arc<AppState>, Request) -> Fut,
    Fut: std::future::Future<Output = (Decision, LogFields)>,
{
    let timeout = parse_timeout(query);
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + timeout);
    // The request timeout bounds reading the body too: a slow sender cannot hold a handler.
    let body = match tokio::time::timeout_at(deadline, read_body(body)).await {
        Ok(Ok(body)) => body,
        Ok(Err(response)) => return response,
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "request body not received in time").into_response(),
    };
    let request = match admission::decode_review(&body) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(webhook = webhook.as_str(), error = %err, "rejected a body that is not an AdmissionReview");
            return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], err.to_string())
                .into_response();
        }
    };
    // What the log line needs; the request itself (and its object) goes to the webhook.
    let (uid, kind, namespace, name, operation) = (
        request.uid.clone(),
        request.kind.kind.clone(),
        request.namespace.clone(),
        request.name.clone(),
        request.operation,
    );
    let (decision, fields) = match tokio::time::timeout_at(deadline, decide(state.clone(), request)).await {
        Ok(decided) => decided,
        Err(_) => {
            tracing::error!(uid = %uid, webhook = webhook.as_str(), "no decision within the request timeout; admitting unchanged");
            let warning = format!("node-agent-webhook did not decide within {timeout:?}; admitted unchanged");
            (Decision::allow_with_warnings(vec![warning]), LogFields::default())
        }
    };
    let elapsed = started.elapsed();
    state.metrics.record_admission(webhook, operation, decision.allowed, elapsed.as_secs_f64());
    let applied: Vec<&str> = fields.applied.iter().map(|setting| setting.as_str()).collect();
    tracing::info!(
        uid = uid.as_str(),
        webhook = webhook.as_str(),
        kind = kind.as_str(),
        namespace = namespace.as_str(),
        name = name.as_str(),
        operation = operation.as_str(),
        allowed = decision.allowed,
        warnings = decision.warnings.len(),
        applied = applied.join(","),
        config = fields.config.as_str(),
        duration_us = elapsed.as_micros() as u64,
        "admission"
    );
    let body = admission::encode_response(&uid, &decision);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = crate::metrics::render(&state.registry);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::configmap::ConfigMapData;
    use crate::config::kind::{Kind, Names};
    use crate::config::validate::Environment;
    use crate::server::state::Settings;
    use crate::validating::{self, Check, ContentsCheck, Target, ValidatingWebhook};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    /// How long [`slow_check`] takes: far beyond the timeout the API server gives below.
    const SLOW_CHECK: Duration = Duration::from_secs(1);

    /// A test double: the config check of a ConfigMap that takes [`SLOW_CHECK`] to check.
    fn slow_check(kind: Kind, contents: &ConfigMapData, env: &Environment) -> ContentsCheck {
        std::thread::sleep(SLOW_CHECK);
        validating::check_contents(kind, contents, env)
    }

    /// The `response` of a `/validate{query}` review of `velero/node-agent-config` holding
    /// `config`, by a server whose config check is `check`; and how long it took.
    async fn validate_with_check(check: Check, uid: &str, config: &str, query: &str) -> (Value, Duration) {
        let target = Target { namespace: "velero".into(), names: Names::default() };
        let settings = Settings { target: target.clone(), velero_version: None, service_accounts: vec![] };
        let mut state = AppState::new(settings, None);
        state.validating = ValidatingWebhook::with_check(target, check);
        let review = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": uid, "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "namespace": "velero", "name": "node-agent-config", "operation": "CREATE",
                "userInfo": {"username": "admin"},
                "object": {"metadata": {"name": "node-agent-config"}, "data": {"config": config}},
            },
        });
        let request = axum::http::Request::post(format!("/validate{query}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(review.to_string()))
            .unwrap_or_else(|e| panic!("a test request: {e}"));
        let started = Instant::now();
        let response = webhook_router(Arc::new(state)).oneshot(request).await.unwrap_or_else(|e| match e {});
        let elapsed = started.elapsed();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap_or_else(|e| panic!("the body: {e}")).to_bytes();
        let answer: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("the answer: {e}"));
        (answer["response"].clone(), elapsed)
    }

    /// A check of contents above the inline size runs on the blocking pool, so the API server's
    /// `?timeout=` cuts it off with the documented answer (admitted unchanged, with a warning),
    /// even on a runtime with one thread: run on the async worker, the check would hold it, and
    /// the timer could not fire before the check's own answer.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_check_is_cut_off_at_the_api_servers_timeout() {
        // Above the size checked on the worker: padding the check reads past.
        let config = format!("{{}}{}", " ".repeat(8192));
        let (response, elapsed) = validate_with_check(slow_check, "slow-1", &config, "?timeout=100ms").await;
        assert_eq!(
            response,
            json!({
                "uid": "slow-1", "allowed": true,
                "warnings": ["node-agent-webhook did not decide within 100ms; admitted unchanged"],
            })
        );
        assert!(elapsed < SLOW_CHECK * 3 / 4, "answered after {elapsed:?}, not at the timeout");
    }

    /// A test double: a config check with a bug that makes it panic.
    fn panicking_check(_: Kind, _: &ConfigMapData, _: &Environment) -> ContentsCheck {
        panic!("a bug in the config check")
    }

    /// A small ConfigMap is checked on the worker; a check that panics there still gets the
    /// documented answer (admitted unchecked, with a warning) instead of a dropped connection,
    /// as a panic on the blocking pool does.
    #[tokio::test(flavor = "current_thread")]
    async fn a_check_that_panics_on_the_worker_admits_with_a_warning() {
        let (response, _) = validate_with_check(panicking_check, "bug-1", "{}", "").await;
        assert_eq!(
            response,
            json!({
                "uid": "bug-1", "allowed": true,
                "warnings": ["node-agent-webhook could not check this ConfigMap (the config check panicked); admitted unchecked, please report this"],
            })
        );
    }

    #[test]
    fn timeouts_follow_the_api_server_query() {
        let cases = [
            (None, 10.0),
            (Some("5s"), 5.0),
            (Some("2500ms"), 2.5),
            (Some("1m"), 30.0),
            (Some("0s"), 10.0),
            (Some("abc"), 10.0),
            (Some("3h"), 10.0),
        ];
        for (input, want) in cases {
            let query = TimeoutQuery { timeout: input.map(str::to_string) };
            assert_eq!(parse_timeout(&query), Duration::from_secs_f64(want), "{input:?}");
        }
    }
}
