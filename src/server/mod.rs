//! The imperative shell: listeners, TLS, certificate reload, probes and graceful shutdown.

pub mod drain;
pub mod readiness;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod timeouts;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::metrics::LoadResult;
use drain::Drain;
use state::AppState;
use tls::{CertificateFiles, LoadedCertificate, ReloadingResolver, TlsError};

/// How the listeners behave; see the `serve` flags for what each means to an operator.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub bind: SocketAddr,
    pub metrics_bind: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub enable_http2: bool,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    /// A connection must finish its TLS handshake, and each request its headers, within this.
    pub header_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    /// How often the certificate files are checked for changes.
    pub cert_poll_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("serving certificate: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Serves until `drain` is signalled, then drains: `/readyz` fails at once, new connections are
/// still accepted for `shutdown_delay`, then in-flight requests get `shutdown_grace` to finish,
/// and then the metrics listener and the certificate reloader stop.
pub async fn run(options: ServeOptions, state: Arc<AppState>, drain: Drain) -> Result<(), ServerError> {
    let files = CertificateFiles { cert: options.tls_cert.clone(), key: options.tls_key.clone() };
    let loaded = files.load(files.read()?)?;
    record_certificate(&state, &loaded);
    let resolver = Arc::new(ReloadingResolver::new(loaded.key.clone()));
    let tls_config = tls::server_config(resolver.clone(), options.client_ca.as_deref(), options.enable_http2)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));

    let listener =
        TcpListener::bind(options.bind).await.map_err(|source| ServerError::Bind { addr: options.bind, source })?;
    let admin = TcpListener::bind(options.metrics_bind)
        .await
        .map_err(|source| ServerError::Bind { addr: options.metrics_bind, source })?;
    tracing::info!(
        webhook = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        metrics = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        http2 = options.enable_http2,
        client_ca = options.client_ca.is_some(),
        "serving"
    );

    let (stop_after_connections, after_connections) = drain::channel();
    let reloader = tokio::spawn(after_connections.clone().run(watch_certificate(
        files,
        loaded.source,
        resolver,
        state.clone(),
        options.cert_poll_interval,
    )));
    let admin_router = routes::admin_router(state.clone());
    let admin_task = tokio::spawn(async move {
        if let Err(err) = axum::serve(admin, admin_router).with_graceful_shutdown(after_connections.signaled()).await {
            tracing::error!(error = %err, "metrics listener failed");
        }
    });

    let router = routes::webhook_router(state.clone());
    let stop_accepting = async {
        drain.signaled().await;
        state.readiness.begin_shutdown();
        tracing::info!(
            delay_ms = options.shutdown_delay.as_millis() as u64,
            "shutdown requested: readiness off, still accepting"
        );
        tokio::time::sleep(options.shutdown_delay).await;
    };
    let connections = accept_until(listener, acceptor, router, &options, stop_accepting).await;
    tracing::info!(grace_ms = options.shutdown_grace.as_millis() as u64, "stopped accepting; draining connections");
    if tokio::time::timeout(options.shutdown_grace, connections.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    stop_after_connections.drain();
    let _ = reloader.await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// Accepts TLS connections until `stop` resolves; returns the handle that drains them.
async fn accept_until(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    options: &ServeOptions,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let limiter = Arc::new(Semaphore::new(options.max_connections));
    let builder = Arc::new(connection_builder(options));
    tokio::pin!(stop);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = limiter.clone().try_acquire_owned() else {
            tracing::warn!(max = options.max_connections, "connection limit reached; refusing a connection");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let (header_timeout, idle_timeout) = (options.header_timeout, options.idle_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let http1 = tls.get_ref().1.alpn_protocol() != Some(b"h2");
            let io = timeouts::TimedIo::new(tls, http1, header_timeout, idle_timeout);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    graceful
}

/// HTTP/1.1 always; HTTP/2 only when enabled, with bounded streams (CVE-2023-44487).
fn connection_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper timer (so no hyper header timeout) for HTTP/1: hyper's also cuts idle
    // keep-alive connections; `timeouts::TimedIo` applies the deadlines instead.
    builder.http1().keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(64))
        .keep_alive_interval(Some(options.idle_timeout))
        .keep_alive_timeout(options.header_timeout);
    if options.enable_http2 {
        builder
    } else {
        builder.http1_only()
    }
}

/// Polls the certificate files and swaps in a new pair when their bytes change. Polling
/// sees both in-place rewrites and `..data` symlink swaps, with no platform quirks.
async fn watch_certificate(
    files: CertificateFiles,
    mut current: (Vec<u8>, Vec<u8>),
    resolver: Arc<ReloadingResolver>,
    state: Arc<AppState>,
    interval: Duration,
) {
    let mut rejected: Option<(Vec<u8>, Vec<u8>)> = None;
    loop {
        tokio::time::sleep(interval).await;
        let source = match files.read() {
            Ok(source) => source,
            Err(err) => {
                tracing::debug!(error = %err, "certificate files not readable right now");
                continue;
            }
        };
        if source == current || rejected.as_ref() == Some(&source) {
            continue;
        }
        match files.load(source.clone()) {
            Ok(loaded) => {
                resolver.replace(loaded.key.clone());
                record_certificate(&state, &loaded);
                tracing::info!(not_after = loaded.not_after, "serving certificate reloaded");
                current = loaded.source;
                rejected = None;
            }
            Err(err) => {
                state.metrics.record_certificate_reload(LoadResult::Error, None);
                tracing::error!(error = %err, "new certificate rejected; still serving the previous one");
                rejected = Some(source);
            }
        }
    }
}

fn record_certificate(state: &AppState, loaded: &LoadedCertificate) {
    state.metrics.record_certificate_reload(LoadResult::Success, Some(loaded.not_after));
}
