//! `node-agent-webhook`: serve the webhooks, check config files, or preview a pod's patch.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use node_agent_webhook::check::{findings_in_file, Finding, Selection};
use node_agent_webhook::cluster::Cluster;
use node_agent_webhook::config::configmap::{check_node_agent, ConfigMapData};
use node_agent_webhook::config::kind::{Kind, Names};
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::config::version::VeleroVersion;
use node_agent_webhook::mutate::identity::NodeAgentIdentity;
use node_agent_webhook::server::state::{AppState, Settings};
use node_agent_webhook::server::{self, ServeOptions};
use node_agent_webhook::source;
use node_agent_webhook::validating::Target;
use node_agent_webhook::{explain, nodes};

#[derive(Parser)]
#[command(version, about = "Validates Velero's node-agent ConfigMap and applies it to data-mover pods")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the validating (/validate) and mutating (/mutate) webhooks over HTTPS.
    Serve(Box<ServeArgs>),
    /// Check node-agent configs or manifests holding the ConfigMap; exit 1 on any error.
    Check(CheckArgs),
    /// Print the JSON patch the mutating webhook would give a pod under a config.
    Mutate(MutateArgs),
    /// For the live node-agent ConfigMap: the nodes each loadAffinity entry and perNodeConfig
    /// selector selects, which run node-agent, the taints data-mover pods do not tolerate, the
    /// allocatable headroom, and the validating webhook's findings against the cluster.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The kubeconfig (default: as kubectl finds one).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace Velero is installed in.
    #[arg(long, default_value = "velero")]
    velero_namespace: String,
    /// Name of node-agent's ConfigMap.
    #[arg(long, default_value = Kind::NodeAgent.default_name())]
    configmap: String,
    /// Velero version (default: node-agent's DaemonSet's image tag).
    #[arg(long)]
    velero_version: Option<VeleroVersion>,
    #[arg(long, value_enum, default_value = "text")]
    output: OutputFormat,
}

#[derive(clap::Args)]
struct MutateArgs {
    /// The config: the JSON value, or a manifest holding the ConfigMap.
    #[arg(long)]
    config: PathBuf,
    /// The pod as node-agent submits it (JSON).
    #[arg(long)]
    pod: PathBuf,
    /// Who creates the pod; node-agent's first ServiceAccount by default
    /// (`system:serviceaccount:<velero namespace>:<account>`).
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    node_agent: NodeAgentArgs,
    /// The storage class that selects the loadAffinity entry (the PVC's class in a cluster).
    #[arg(long)]
    storage_class: Option<String>,
    /// In manifests, the ConfigMap's name.
    #[arg(long, default_value = Kind::NodeAgent.default_name())]
    configmap: String,
    /// Print the patched pod instead of the patch.
    #[arg(long)]
    apply: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// PEM certificate chain (leaf first); reloaded when the file changes.
    #[arg(long, env = "NAW_TLS_CERT")]
    tls_cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); reloaded when the file changes.
    #[arg(long, env = "NAW_TLS_KEY")]
    tls_key: PathBuf,
    /// Address of the HTTPS webhook listener.
    #[arg(long, env = "NAW_BIND", default_value = "0.0.0.0:8443")]
    bind: SocketAddr,
    /// Address of the plain-HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "NAW_METRICS_BIND", default_value = "0.0.0.0:9090")]
    metrics_bind: SocketAddr,
    #[command(flatten)]
    node_agent: NodeAgentArgs,
    /// Name of node-agent's ConfigMap (its --node-agent-configmap).
    #[arg(long, env = "NAW_CONFIGMAP", default_value = Kind::NodeAgent.default_name())]
    configmap: String,
    /// Name of the repository maintenance job ConfigMap (the Velero server's
    /// --repo-maintenance-job-configmap) to validate; empty: not validated.
    #[arg(long, env = "NAW_REPO_MAINTENANCE_CONFIGMAP", default_value = Kind::RepoMaintenance.default_name())]
    repo_maintenance_configmap: String,
    /// Name of the backup repository ConfigMap (the Velero server's and node-agent's
    /// --backup-repository-configmap) to validate; empty: not validated.
    #[arg(long, env = "NAW_BACKUP_REPOSITORY_CONFIGMAP", default_value = Kind::BackupRepository.default_name())]
    backup_repository_configmap: String,
    /// Read the live config from this file (the config value or a ConfigMap manifest) instead
    /// of watching the ConfigMap through the Kubernetes API.
    #[arg(long, env = "NAW_CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// Velero version the config is for, for version-aware warnings (e.g. 1.17.0); by
    /// default the node-agent DaemonSet's image tag when the cluster is reachable, followed as
    /// it changes. On a release newer than this build knows, unknown keys are warnings.
    #[arg(long, env = "NAW_VELERO_VERSION")]
    velero_version: Option<VeleroVersion>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, env = "NAW_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// Offer HTTP/2 (off by default since CVE-2023-44487).
    #[arg(long, env = "NAW_ENABLE_HTTP2")]
    enable_http2: bool,
    /// After SIGTERM, keep accepting this long while endpoints drain (e.g. 5s, 500ms).
    #[arg(long, env = "NAW_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    shutdown_delay: Duration,
    /// Then give in-flight requests this long to finish.
    #[arg(long, env = "NAW_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// A connection must complete its TLS handshake, and each request its headers, within this.
    #[arg(long, env = "NAW_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request.
    #[arg(long, env = "NAW_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// At most this many connections at once; more are refused.
    #[arg(long, env = "NAW_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Log format; json by default when stderr is not a terminal.
    #[arg(long, env = "NAW_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

/// Who node-agent is, for `serve` and `mutate` alike: whose pods are data-mover pods.
#[derive(clap::Args)]
struct NodeAgentArgs {
    /// Namespace Velero (and its node-agent ConfigMap) is installed in.
    #[arg(long, env = "NAW_VELERO_NAMESPACE", default_value = "velero")]
    velero_namespace: String,
    /// ServiceAccount node-agent creates data-mover pods as (repeatable).
    #[arg(
        long = "node-agent-service-account",
        env = "NAW_NODE_AGENT_SERVICE_ACCOUNT",
        value_delimiter = ',',
        default_values_t = ["velero".to_string(), "velero-server".to_string()]
    )]
    node_agent_service_accounts: Vec<String>,
}

impl NodeAgentArgs {
    fn identity(&self) -> NodeAgentIdentity {
        NodeAgentIdentity {
            namespace: self.velero_namespace.clone(),
            service_accounts: self.node_agent_service_accounts.clone(),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Files to check (`-` for standard input): a config value, or YAML/JSON manifests.
    #[arg(required = true)]
    files: Vec<String>,
    /// In manifests, check the ConfigMap with this name as node-agent's.
    #[arg(long, default_value = Kind::NodeAgent.default_name())]
    configmap: String,
    /// In manifests, check the ConfigMap with this name as the repository maintenance job
    /// ConfigMap; an empty name checks none.
    #[arg(long, default_value = Kind::RepoMaintenance.default_name())]
    repo_maintenance_configmap: String,
    /// In manifests, check the ConfigMap with this name as the backup repository ConfigMap; an
    /// empty name checks none.
    #[arg(long, default_value = Kind::BackupRepository.default_name())]
    backup_repository_configmap: String,
    /// In manifests, check every ConfigMap.
    #[arg(long)]
    all: bool,
    /// Check every value and ConfigMap as this kind, whatever its name: node-agent,
    /// repo-maintenance or backup-repository. A bare config value is node-agent's without it.
    #[arg(long)]
    kind: Option<Kind>,
    /// Velero version the config is for, for version-aware warnings; on a release newer
    /// than this build knows, unknown keys are warnings, not errors.
    #[arg(long)]
    velero_version: Option<VeleroVersion>,
    #[arg(long, value_enum, default_value = "text")]
    output: OutputFormat,
    /// Also check against this cluster: its Nodes, node-agent's DaemonSet (in
    /// --velero-namespace) and StorageClasses, for the placement warnings.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// With --kubeconfig: the namespace Velero is installed in.
    #[arg(long, default_value = "velero")]
    velero_namespace: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// Go-style durations as operators write them in manifests: `5s`, `500ms`, `1m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    server::timeouts::parse_duration(text).ok_or_else(|| format!("invalid duration {text:?}: use e.g. 5s, 500ms, 1m"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            // Held to the end: its drop writes out the lines still queued, the last one included.
            let _log = init_logging(args.log_format);
            match serve(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "exiting");
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => check(args),
        Command::Explain(args) => match explain(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(2)
            }
        },
        Command::Mutate(args) => match mutate(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn init_logging(format: Option<LogFormat>) -> node_agent_webhook::logging::Guard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    node_agent_webhook::logging::init(json, filter)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let names =
            Names::from_flags(&args.configmap, &args.repo_maintenance_configmap, &args.backup_repository_configmap);
        let identity = args.node_agent.identity();
        let target = Target { namespace: identity.namespace.clone(), names };
        let cluster = match Cluster::infer().await {
            Ok(cluster) => Some(cluster),
            Err(err) if args.config_file.is_some() => {
                tracing::info!(error = %err, "no Kubernetes API: no storage-class lookups or PriorityClass checks");
                None
            }
            Err(err) => {
                return Err(err).context("watching the ConfigMap needs the Kubernetes API (or use --config-file)")
            }
        };
        let settings = Settings {
            target: target.clone(),
            velero_version: args.velero_version,
            service_accounts: identity.service_accounts,
        };
        let state = Arc::new(AppState::new(settings, cluster.clone()));
        let source = match (&args.config_file, &cluster) {
            (Some(path), _) => source::Source::File(path.clone()),
            (None, Some(cluster)) => source::Source::ConfigMap {
                cluster: cluster.clone(),
                namespace: target.namespace.clone(),
                name: target.names.node_agent.clone(),
            },
            (None, None) => anyhow::bail!("no config source"),
        };
        let (shutdown, drain) = server::shutdown::on_signals();
        let mut background = Vec::new();
        if let Some(cluster) = cluster {
            // node-agent's DaemonSet first, so that the config is loaded once, for the Velero
            // version node-agent runs.
            background.push(tokio::spawn(drain.clone().run(source::watch_nodes(cluster.clone(), state.clone()))));
            let follow_version = args.velero_version.is_none();
            let node_agent = source::follow_node_agent(cluster.clone(), follow_version, state.clone()).await;
            background.push(tokio::spawn(drain.clone().run(node_agent)));
            let priority_classes = source::watch_priority_classes(cluster.clone(), state.clone());
            background.push(tokio::spawn(drain.clone().run(priority_classes)));
            background.push(tokio::spawn(drain.clone().run(source::watch_storage_classes(cluster, state.clone()))));
        }
        background.push(tokio::spawn(drain.clone().run(source::run(source, state.clone()))));
        let options = ServeOptions {
            bind: args.bind,
            metrics_bind: args.metrics_bind,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            client_ca: args.client_ca,
            enable_http2: args.enable_http2,
            shutdown_delay: args.shutdown_delay,
            shutdown_grace: args.shutdown_grace,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections,
            max_concurrent_streams: 100,
            cert_poll_interval: Duration::from_millis(500),
        };
        // The first signal drains the server and the background tasks; a second gives up on them.
        let served = shutdown.run(server::run(options, state, drain)).await?;
        for task in background {
            let _ = task.await;
        }
        served.context("webhook server")
    })
}

/// Reads what the placement checks need of the cluster, on a runtime of its own.
fn read_cluster(kubeconfig: Option<&std::path::Path>, namespace: &str) -> anyhow::Result<nodes::ClusterRead> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let client = nodes::client(kubeconfig).await?;
        Ok(nodes::read_cluster(client, namespace).await?)
    })
}

fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let (read, (data, binary_keys), version) = runtime.block_on(async {
        let client = nodes::client(args.kubeconfig.as_deref()).await?;
        let read = nodes::read_cluster(client.clone(), &args.velero_namespace).await?;
        let configmap = nodes::configmap(client.clone(), &args.velero_namespace, &args.configmap).await?;
        let version = args.velero_version.or(read.node_agent_version);
        anyhow::Ok((read, configmap, version))
    })?;
    let view = read.view();
    let env = Environment { velero_version: version, cluster: Some(view), ..Environment::default() };
    let check = check_node_agent(&ConfigMapData { data, binary_keys }, &env);
    let findings = check.rendered().into_iter().map(|(severity, text)| format!("{severity}: {text}")).collect();
    let config = check.config().cloned().unwrap_or_default();
    let name = format!("{}/{}", args.velero_namespace, args.configmap);
    let report = explain::report(&name, &config, findings, &view, version);
    let text = match args.output {
        OutputFormat::Text => explain::render_text(&report),
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    write_stdout(&text)?;
    Ok(())
}

fn check(args: CheckArgs) -> ExitCode {
    let names = Names::from_flags(&args.configmap, &args.repo_maintenance_configmap, &args.backup_repository_configmap);
    let selection = Selection { names, all: args.all, kind: args.kind };
    let read = match args.kubeconfig.as_deref().map(|path| read_cluster(Some(path), &args.velero_namespace)).transpose()
    {
        Ok(read) => read,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    let env = Environment {
        velero_version: args.velero_version,
        cluster: read.as_ref().map(nodes::ClusterRead::view),
        ..Environment::default()
    };
    let mut findings: Vec<Finding> = Vec::new();
    for file in &args.files {
        let text = match read_input(file) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("{file}: {err}");
                return ExitCode::from(2);
            }
        };
        match findings_in_file(file, &text, &selection, &env) {
            Ok(found) => findings.extend(found),
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::from(2);
            }
        }
    }
    let output = match args.output {
        OutputFormat::Text => findings.iter().map(|finding| finding.render() + "\n").collect(),
        OutputFormat::Json => match serde_json::to_string_pretty(&findings) {
            Ok(json) => json + "\n",
            Err(err) => {
                eprintln!("cannot encode findings: {err}");
                return ExitCode::from(2);
            }
        },
    };
    if let Err(err) = write_stdout(&output) {
        eprintln!("cannot write the findings: {err}");
        return ExitCode::from(2);
    }
    if findings.iter().any(Finding::is_error) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn mutate(args: MutateArgs) -> anyhow::Result<()> {
    let config_text = std::fs::read_to_string(&args.config).with_context(|| format!("{}", args.config.display()))?;
    let config =
        node_agent_webhook::config::load::config_from_text(&config_text, &args.configmap, None).map_err(|err| {
            anyhow::anyhow!("{}: {err} (run `node-agent-webhook check` for details)", args.config.display())
        })?;
    let pod_text = std::fs::read_to_string(&args.pod).with_context(|| format!("{}", args.pod.display()))?;
    let pod: serde_json::Value = serde_json::from_str(&pod_text).with_context(|| format!("{}", args.pod.display()))?;
    let config_id = node_agent_webhook::config::load::file_id(config_text.as_bytes());
    let identity = args.node_agent.identity();
    let user = args.user.unwrap_or_else(|| {
        let account = identity.service_accounts.first().map_or("velero", String::as_str);
        format!("system:serviceaccount:{}:{account}", identity.namespace)
    });
    let preview = node_agent_webhook::mutate::preview(&pod, &config, &config_id, &identity, &user, args.storage_class)?;
    for warning in &preview.warnings {
        eprintln!("warning: {warning}");
    }
    let output = if args.apply { preview.patched } else { preview.patch };
    write_stdout(&(serde_json::to_string_pretty(&output)? + "\n")).context("stdout")?;
    Ok(())
}

/// Writes `text` to standard output. A reader that stops early (`check … | head`) closes the
/// pipe: the rest is dropped and that is no error (the exit code still gives the verdict);
/// `println!` would panic there, Rust ignoring SIGPIPE.
fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn read_input(file: &str) -> std::io::Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}
