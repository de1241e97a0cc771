//! Production serving behaviour of the real binary on 127.0.0.1: certificate rotation under
//! load, client certificates, metrics, probes, graceful shutdown and connection limits.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use support::*;

fn valid_review() -> Vec<u8> {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "node-agent-config", "namespace": "velero"}, "data": {"config": "{}"}});
    serde_json::to_vec(&configmap_review("CREATE", Some(&cm), None)).expect("json")
}

fn config_flag(certs: &Certs) -> String {
    std::fs::write(certs.path("config.json"), "{}").expect("config");
    certs.path("config.json").to_str().expect("utf-8").to_string()
}

/// A raw rustls client, to see which certificate and protocol the server offers.
fn tls_connect(
    port: u16,
    ca_pem: &str,
    alpn: &[&[u8]],
    client_cert: Option<(&str, &str)>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// The CN of the certificate the server presents to a new connection.
fn served_common_name(port: u16, ca_pem: &str) -> String {
    let stream = tls_connect(port, ca_pem, &[b"http/1.1"], None).expect("TLS");
    let leaf = stream.conn.peer_certificates().and_then(|c| c.first()).expect("a certificate").clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).expect("x509");
    let name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_string();
    name
}

/// Writes the pair into a new timestamped directory and swaps `..data` to it atomically,
/// as the kubelet does for Secret volumes.
fn swap_secret(dir: &std::path::Path, stamp: &str, cert: &str, key: &str) {
    let stamped = dir.join(stamp);
    std::fs::create_dir(&stamped).expect("dir");
    std::fs::write(stamped.join("tls.crt"), cert).expect("cert");
    std::fs::write(stamped.join("tls.key"), key).expect("key");
    let tmp = dir.join("..data_tmp");
    symlink(stamp, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
}

#[test]
fn certificate_rotation_by_symlink_swap_drops_no_request_and_serves_the_new_certificate() {
    let certs = Certs::new();
    let secret = certs.dir.path().join("secret");
    std::fs::create_dir(&secret).expect("dir");
    let (cert, key) = certs.issue("first");
    swap_secret(&secret, "..2026_11_23_1", &cert, &key);
    symlink("..data/tls.crt", secret.join("tls.crt")).expect("link");
    symlink("..data/tls.key", secret.join("tls.key")).expect("link");
    let server =
        Server::start(&secret.join("tls.crt"), &secret.join("tls.key"), &["--config-file", &config_flag(&certs)]);
    assert_eq!(served_common_name(server.port, &certs.ca_pem), "node-agent-webhook first");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let client = client(&certs.ca_pem);
            let url = server.url("/validate");
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match client.post(&url).header("content-type", "application/json").body(valid_review()).send() {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (cert, key) = certs.issue("second");
    swap_secret(&secret, "..2026_11_23_2", &cert, &key);
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_common_name(server.port, &certs.ca_pem) != "node-agent-webhook second" {
        assert!(Instant::now() < deadline, "the new certificate was not picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    // A pair that does not match keeps the old one serving.
    let (_, other_key) = certs.issue("mismatch");
    swap_secret(&secret, "..2026_11_23_3", &cert, &other_key);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = server.get_admin("/metrics").expect("metrics");
        if metrics.contains("node_agent_webhook_certificate_reloads_total{result=\"error\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the bad pair was not noticed:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(served_common_name(server.port, &certs.ca_pem), "node-agent-webhook second");
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("worker");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during rotation");
    assert!(ok.load(Ordering::Relaxed) > 50, "too few requests: {}", ok.load(Ordering::Relaxed));
    let (_, metrics) = server.get_admin("/metrics").expect("metrics");
    assert!(metrics.contains("node_agent_webhook_certificate_reloads_total{result=\"success\"} 2"), "{metrics}");
}

#[test]
fn client_ca_requires_a_client_certificate() {
    let certs = Certs::new();
    let ca = certs.path("ca.crt");
    let server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--client-ca", ca.to_str().expect("utf-8")],
    );
    // Without a certificate the handshake (or the first read) fails.
    let anonymous = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).and_then(|mut s| {
        s.write_all(b"GET /validate HTTP/1.1\r\nhost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err("closed".to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(anonymous.is_err(), "a client without a certificate must be refused");
    let (cert, key) = certs.issue("api-server");
    let mut stream = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], Some((&cert, &key))).expect("mTLS");
    let body = valid_review();
    let request = format!("POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    stream.write_all(request.as_bytes()).expect("write");
    stream.write_all(&body).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn http2_is_offered_only_when_enabled() {
    let certs = Certs::new();
    let config = config_flag(&certs);
    let plain = Server::start(&certs.path("tls.crt"), &certs.path("tls.key"), &["--config-file", &config]);
    let stream = tls_connect(plain.port, &certs.ca_pem, &[b"h2", b"http/1.1"], None).expect("TLS");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let h2 =
        Server::start(&certs.path("tls.crt"), &certs.path("tls.key"), &["--config-file", &config, "--enable-http2"]);
    let stream = tls_connect(h2.port, &certs.ca_pem, &[b"h2", b"http/1.1"], None).expect("TLS");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    let client = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).expect("ca"))
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let response = client.post(h2.url("/validate")).body(valid_review()).send().expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[test]
fn metrics_parse_as_openmetrics_and_move_with_traffic() {
    let certs = Certs::new();
    let server =
        Server::start(&certs.path("tls.crt"), &certs.path("tls.key"), &["--config-file", &config_flag(&certs)]);
    let client = client(&certs.ca_pem);
    for _ in 0..3 {
        post(&client, &server.url("/validate"), valid_review());
    }
    let (status, text) = server.get_admin("/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert_eq!(text.lines().last(), Some("# EOF"), "OpenMetrics ends with # EOF");
    for line in text.lines() {
        let sample = line.starts_with('#')
            || line.split_once(' ').is_some_and(|(name, value)| {
                !name.is_empty() && (value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN")
            });
        assert!(sample, "not an OpenMetrics line: {line}");
    }
    for want in [
        "node_agent_webhook_admission_requests_total{webhook=\"validate\",operation=\"CREATE\",allowed=\"true\"} 3",
        "node_agent_webhook_admission_duration_seconds_count{webhook=\"validate\"} 3",
        "node_agent_webhook_admission_duration_seconds_bucket{le=\"0.0001\",webhook=\"validate\"}",
        "node_agent_webhook_admission_duration_seconds_bucket{le=\"10.0\",webhook=\"validate\"} 3",
        "node_agent_webhook_config_generation 1",
        "node_agent_webhook_config_info{config=\"sha256:",
        "node_agent_webhook_config_reloads_total{result=\"success\"} 1",
        "node_agent_webhook_certificate_expiry_timestamp_seconds ",
        "node_agent_webhook_build_info{version=\"",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(server.get_admin("/healthz").expect("healthz").0, 200);
    assert_eq!(server.get_admin("/readyz").expect("readyz").0, 200);
}

#[test]
fn sigterm_turns_unready_completes_in_flight_requests_and_exits_zero() {
    let certs = Certs::new();
    let mut server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--shutdown-delay", "1s", "--shutdown-grace", "10s"],
    );
    // An in-flight request: headers and half the body sent.
    let body = valid_review();
    let mut stream = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).expect("TLS");
    let head = validate_head(body.len());
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(&body[..body.len() / 2]).expect("write");
    stream.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(200));

    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match server.get_admin("/readyz") {
            Ok((503, reason)) => {
                assert_eq!(reason, "shutting down");
                break;
            }
            other => assert!(Instant::now() < deadline, "still ready after SIGTERM: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.get_admin("/healthz").expect("healthz").0, 200, "alive while draining");
    std::thread::sleep(Duration::from_millis(1500)); // past the shutdown delay: no longer accepting
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err(), "new connections are refused after the delay");
    stream.write_all(&body[body.len() / 2..]).expect("finish the body");
    let mut response = vec![0u8; 4096];
    let n = stream.read(&mut response).expect("response");
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"allowed\":true"), "{response}");
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert_eq!(status, Some(0), "logs:\n{}", server.log_text());
}

#[test]
fn a_second_sigterm_exits_at_once_without_draining() {
    let certs = Certs::new();
    let mut server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--shutdown-delay", "60s", "--shutdown-grace", "60s"],
    );
    let pid = server.child.id().to_string();
    let term = || assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    term();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get_admin("/readyz").map(|(status, _)| status) != Ok(503) {
        assert!(Instant::now() < deadline, "still ready after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.child.try_wait().ok().flatten(), None, "the first SIGTERM drains: the delay is 60 s");
    term();
    let status = wait_exit(&mut server, Duration::from_secs(5));
    assert_eq!(status, Some(1), "logs:\n{}", server.log_text());
    assert!(server.log_text().contains("second shutdown signal"), "logs:\n{}", server.log_text());
}

/// The log lines leave the request path through a writer thread (`logging.rs`), but none may
/// be lost at SIGTERM: the log file holds the line of every answered review, in order, and the
/// server's last line ("stopped", written just before it exits). Here the writer keeps up, so
/// this holds even without the flush at exit; `logging::tests::dropping_the_guard_writes_every_queued_line`
/// holds the flush itself, behind a slow sink.
#[test]
fn after_sigterm_the_log_file_holds_every_answered_reviews_line_and_the_last_line() {
    let certs = Certs::new();
    let log_path = certs.path("server.log");
    let log = std::fs::File::create(&log_path).expect("the log file");
    let mut server = Server::start_logging_to(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--shutdown-delay", "0s", "--shutdown-grace", "5s"],
        log,
    );
    let client = client(&certs.ca_pem);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "node-agent-config", "namespace": "velero"}, "data": {"config": "{}"}});
    let uids: Vec<String> = (0..300).map(|i| format!("log-line-{i}")).collect();
    for uid in &uids {
        let mut review = configmap_review("CREATE", Some(&cm), None);
        review["request"]["uid"] = json!(uid);
        assert_eq!(support::review(&client, &server.url("/validate"), &review)["allowed"], true);
    }
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    assert_eq!(wait_exit(&mut server, Duration::from_secs(10)), Some(0));

    let text = std::fs::read_to_string(&log_path).expect("the log");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    let logged: Vec<&str> =
        lines.iter().filter(|line| line["message"] == "admission").filter_map(|line| line["uid"].as_str()).collect();
    assert_eq!(logged, uids, "the admission lines, in order; log:\n{text}");
    assert_eq!(lines.last().map(|line| &line["message"]), Some(&json!("stopped")), "log:\n{text}");
}

/// After SIGTERM, answers on a keep-alive connection opened before it say `Connection: close`
/// and the server closes the connection after the answer: the client never sends a request on
/// an idle connection the server is about to close (the API server does not retry a webhook POST
/// that fails with EOF).
#[test]
fn after_sigterm_keep_alive_connections_are_closed_after_their_next_answer() {
    let certs = Certs::new();
    let server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--shutdown-delay", "60s", "--shutdown-grace", "1s"],
    );
    let mut stream = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).expect("TLS");
    let body = valid_review();
    let exchange = |stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>| {
        let head = validate_head(body.len());
        stream.write_all(head.as_bytes()).expect("write");
        stream.write_all(&body).expect("write");
        stream.flush().expect("flush");
        let mut response = vec![0u8; 8192];
        let n = stream.read(&mut response).expect("response");
        String::from_utf8_lossy(&response[..n]).to_lowercase()
    };
    let before = exchange(&mut stream);
    assert!(before.starts_with("http/1.1 200") && !before.contains("connection: close"), "{before}");

    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get_admin("/readyz").map(|(status, _)| status) != Ok(503) {
        assert!(Instant::now() < deadline, "still ready after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = exchange(&mut stream);
    assert!(after.starts_with("http/1.1 200") && after.contains("connection: close"), "{after}");
    let mut rest = [0u8; 64];
    assert_eq!(stream.read(&mut rest).unwrap_or(0), 0, "the server closes the connection after the answer");
    // New connections during the delay get the same treatment.
    let mut fresh = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).expect("TLS during the delay");
    assert!(exchange(&mut fresh).contains("connection: close"));
}

/// The head of an HTTP/1.1 POST /validate of `len` bytes.
fn validate_head(len: usize) -> String {
    format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    )
}

fn wait_exit(server: &mut Server, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_client_that_sends_nothing_is_disconnected_and_a_busy_keep_alive_client_is_not() {
    let certs = Certs::new();
    let server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--header-timeout", "1s"],
    );
    let mut idle = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let closed = matches!(idle.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "an idle connection must be closed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "closed after {waited:?}");

    // One kept-alive connection sending a request every 300 ms for 3 s is never cut off.
    let client = client(&certs.ca_pem);
    for _ in 0..10 {
        let (status, _) = post(&client, &server.url("/validate"), valid_review());
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, _) = post(&client, &server.url("/validate"), vec![b' '; 7 * 1024 * 1024 + 1]);
    assert_eq!(status, 413);
}

#[test]
fn keep_alive_connections_idle_for_the_idle_timeout_and_slow_headers_are_cut_at_the_header_timeout() {
    let certs = Certs::new();
    let server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--header-timeout", "1s", "--idle-timeout", "3s"],
    );
    let mut stream = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).expect("TLS");
    let body = valid_review();
    let head = validate_head(body.len());
    let mut response = vec![0u8; 4096];
    for round in 0..2 {
        stream.write_all(head.as_bytes()).expect("write");
        stream.write_all(&body).expect("write");
        let n = stream.read(&mut response).unwrap_or(0);
        let text = String::from_utf8_lossy(&response[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text:?}");
        // Idle longer than the header timeout, as the API server is between reviews.
        std::thread::sleep(Duration::from_millis(2000));
    }
    // Past the idle timeout the server closes the connection.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(matches!(stream.read(&mut response), Ok(0) | Err(_)), "closed after the idle timeout");

    // Headers trickling in slower than the header timeout: cut off.
    let mut slow = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).expect("TLS");
    let started = Instant::now();
    slow.write_all(b"POST /validate HTTP/1.1\r\n").expect("write");
    let mut closed = false;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        if slow.write_all(b"x-slow: 1\r\n").and_then(|_| slow.flush()).is_err() {
            closed = true;
            break;
        }
    }
    closed = closed || matches!(slow.read(&mut response), Ok(0) | Err(_));
    assert!(closed, "slow headers must be cut off");
    assert!(started.elapsed() < Duration::from_secs(4), "cut after {:?}", started.elapsed());
}

#[test]
fn connections_beyond_the_cap_are_refused_until_one_closes() {
    let certs = Certs::new();
    let server = Server::start(
        &certs.path("tls.crt"),
        &certs.path("tls.key"),
        &["--config-file", &config_flag(&certs), "--max-connections", "1"],
    );
    let first = tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).expect("first connection");
    assert!(tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).is_err(), "over the cap");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    while tls_connect(server.port, &certs.ca_pem, &[b"http/1.1"], None).is_err() {
        assert!(Instant::now() < deadline, "a freed slot must be usable again");
        std::thread::sleep(Duration::from_millis(50));
    }
}
