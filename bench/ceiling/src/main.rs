//! The ceiling: reads the body, parses the AdmissionReview JSON, answers `allowed` with the
//! uid echoed. Same stack and connection settings as node-agent-webhook's webhook listener,
//! nothing else: no routing framework, no metrics, no logging, no config.
//!
//! ceiling --bind 127.0.0.1:28443 --tls-cert tls.crt --tls-key tls.key [--enable-http2] [--patch FILE]
//!
//! `--patch FILE` answers every review with that JSON patch (the same bytes each time, no
//! planning): a no-op that asks the API server for the same work as a patch of ours does
//! (bench/e2e/run.sh, configuration d).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;

struct Args {
    bind: SocketAddr,
    cert: String,
    key: String,
    http2: bool,
    patch: Option<String>,
}

fn args() -> Args {
    let mut bind: SocketAddr = "127.0.0.1:28443".parse().expect("address");
    let (mut cert, mut key, mut http2, mut patch) = (String::new(), String::new(), false, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bind" => bind = it.next().and_then(|v| v.parse().ok()).expect("--bind ADDR:PORT"),
            "--tls-cert" => cert = it.next().expect("--tls-cert FILE"),
            "--tls-key" => key = it.next().expect("--tls-key FILE"),
            "--enable-http2" => http2 = true,
            "--patch" => patch = Some(it.next().expect("--patch FILE")),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!cert.is_empty() && !key.is_empty(), "--tls-cert and --tls-key are required");
    Args { bind, cert, key, http2, patch }
}

fn tls_config(args: &Args) -> rustls::ServerConfig {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&args.cert).expect("cert file").collect::<Result<_, _>>().expect("cert PEM");
    let key = PrivateKeyDer::from_pem_file(&args.key).expect("key PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols =
        if args.http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    config
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// The JSON patch of `--patch`, validated and base64-encoded once.
fn encoded_patch(path: &str) -> String {
    let text = std::fs::read(path).expect("--patch file");
    let ops: Value = serde_json::from_slice(&text).expect("--patch: a JSON patch");
    assert!(ops.is_array(), "--patch: a JSON array of operations");
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&ops).expect("patch bytes"))
}

async fn review(request: Request<Incoming>, patch: Option<Arc<str>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, b"unreadable body".to_vec())),
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(err) => return Ok(reply(StatusCode::BAD_REQUEST, err.to_string().into_bytes())),
    };
    let Some(uid) = review.pointer("/request/uid").and_then(Value::as_str) else {
        return Ok(reply(StatusCode::BAD_REQUEST, b"no request.uid".to_vec()));
    };
    let mut answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}});
    if let Some(patch) = patch {
        answer["response"]["patchType"] = json!("JSONPatch");
        answer["response"]["patch"] = json!(&*patch);
    }
    Ok(reply(StatusCode::OK, serde_json::to_vec(&answer).unwrap_or_default()))
}

/// As node-agent-webhook's `connection_builder`: HTTP/1.1 keep-alive, h2 with 100 streams.
fn builder(http2: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10)).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(64))
        .keep_alive_interval(Some(Duration::from_secs(90)))
        .keep_alive_timeout(Duration::from_secs(10));
    if http2 {
        builder
    } else {
        builder.http1_only()
    }
}

fn main() {
    let args = args();
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&args)));
    let builder = Arc::new(builder(args.http2));
    let patch: Option<Arc<str>> = args.patch.as_deref().map(|path| encoded_patch(path).into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.bind).await.expect("bind");
        let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
        eprintln!("ceiling listening on {}", args.bind);
        loop {
            // SIGTERM returns from main rather than killing the process: an instrumented build
            // (hack/pgo/build.sh) writes its profile on a normal exit only.
            let tcp = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
                _ = terminate.recv() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let builder = builder.clone();
            let patch = patch.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                    return;
                };
                let _ = builder
                    .serve_connection(
                        TokioIo::new(tls),
                        hyper::service::service_fn(move |request| review(request, patch.clone())),
                    )
                    .await;
            });
        }
    });
}
