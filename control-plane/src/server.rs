//! Process wiring for `tollgate serve` and `tollgate migrate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tonic::service::InterceptorLayer;

use crate::accounts::api_key::KeyHasher;
use crate::accounts::bootstrap::{ensure_admin, ensure_signing_key, AdminBootstrap};
use crate::api::{app, AccessPolicy, AppState, PoolLimits, SessionSettings};
use crate::audit_retention;
use crate::changes::audit_chain::AuditChainKey;
use crate::config::ValidConfig;
use crate::domain::audit_sample::AuditSample;
use crate::domain::correlation::{CorrelationId, REQUEST_ID_HEADER};
use crate::domain::live::Live;
use crate::filter_service::limits::LimitService;
use crate::filter_service::{DataPlanePolicy, FilterApi};
use crate::identity::address_failures::AddressFailures;
use crate::identity::email_links::EmailLinks;
use crate::identity::envoy_credential::EnvoyCredential;
use crate::identity::ldap::sync as ldap_sync;
use crate::identity::lockout::AccountLockout;
use crate::identity::mfa::MFA_LOCKOUT_KEY_SPACE;
use crate::identity::oidc::OidcProviders;
use crate::identity::password::PasswordWork;
use crate::identity::sealing::Sealer;
use crate::identity::secret;
use crate::identity::self_service::MailBudget;
use crate::identity::tokens::{SessionTokens, TokenPolicy};
use crate::limits::counters;
use crate::limits::subjects::SubjectLimits;
use crate::limits::user_labels::UserLabels;
use crate::mail::Mailer;
use crate::proto::v1::filter_service_server::FilterServiceServer;
use crate::reload::{self, LiveSettings, LogFilter, Reloader};
use crate::routing::health_check;
use crate::routing::topology::{self, TopologyPolicy};
use crate::routing::upstream_tls;
use crate::routing::xds::XdsPublisher;
use crate::store::{SqlStore, Store};

/// Logins refused before any password check are audited at most once per address and reason
/// in this long.
const LOGIN_REFUSAL_AUDIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(config: &ValidConfig) -> Result<SqlStore> {
    if let Some(path) = config.database_url.strip_prefix("sqlite://") {
        let file = Path::new(path.split('?').next().unwrap_or(path));
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)
                .with_context(|| format!("cannot create {} for `database.url`", dir.display()))?;
        }
        create_private_file(file)
            .with_context(|| format!("cannot create {} for `database.url`", file.display()))?;
    }
    let chain = AuditChainKey::new(&server_secret(config)?);
    let store = SqlStore::connect(
        &config.database_url,
        config.raw.database.max_connections,
        chain,
    )
    .await
    .with_context(|| {
        format!(
            "cannot open the database (`database.url` = {})",
            redact(&config.database_url)
        )
    })?;
    let applied = store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(store)
}

/// Creates `dir` and its missing parents, readable by this user only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `file` empty and readable by this user only, unless it exists. SQLite gives the
/// journals it creates beside a database the database's mode.
fn create_private_file(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Everything the servers run, wired from the configuration and the store.
pub struct Services {
    pub http: AppState,
    pub filter: FilterApi,
    pub xds: Arc<XdsPublisher>,
    /// What start-up did about the admin user, for the operator.
    pub admin: AdminBootstrap,
    /// What every Envoy must present on the gRPC port.
    pub envoy_credential: EnvoyCredential,
    /// The settings a configuration reload replaces.
    pub live: LiveSettings,
}

/// The configured server secret, or the one in `data_dir` (created when missing).
fn server_secret(config: &ValidConfig) -> Result<Vec<u8>> {
    let configured = config.raw.security.key_hash_secret.as_deref();
    if configured.is_none() {
        create_private_dir(&config.raw.data_dir).with_context(|| {
            format!("cannot create `data_dir` {}", config.raw.data_dir.display())
        })?;
    }
    Ok(secret::load_or_create(configured, &config.raw.data_dir)?)
}

/// Loads secrets, makes sure the admin and a signing key exist, and wires the services.
pub async fn services(config: &ValidConfig, store: Arc<dyn Store>) -> Result<Services> {
    // Installed before any task starts, so that nothing they count at start-up is lost.
    let metrics = prometheus();
    let secret = server_secret(config)?;
    let envoy_credential = {
        let configured = config.raw.grpc.credential.as_deref();
        if configured.is_none() {
            create_private_dir(&config.raw.data_dir).with_context(|| {
                format!("cannot create `data_dir` {}", config.raw.data_dir.display())
            })?;
        }
        EnvoyCredential::new(&secret::envoy_credential(configured, &config.raw.data_dir)?)
    };
    let hasher = KeyHasher::new(&secret);
    let admin = ensure_admin(
        store.as_ref(),
        &hasher,
        &config.raw.keys.prefix,
        config.raw.bootstrap.admin_api_key.as_deref(),
    )
    .await
    .context("cannot create the admin user")?;

    let sessions = &config.raw.sessions;
    let sealer = Sealer::new(&secret);
    let tokens = SessionTokens::new(TokenPolicy {
        issuer: sessions.issuer.clone(),
        audience: sessions.audience.clone(),
        access_ttl_secs: sessions.access_token_ttl_secs.into(),
    });
    ensure_signing_key(store.as_ref(), &tokens, &sealer, config.session_algorithm)
        .await
        .context("cannot prepare the session signing keys")?;
    let counters = counters::open(&config.raw.redis).with_context(|| {
        format!(
            "cannot use the rate-limit counters (`redis.url` = {})",
            redact(&config.raw.redis.url)
        )
    })?;
    match counters.dependency() {
        Some(dependency) => tracing::info!(dependency, "rate-limit counters are shared"),
        None => tracing::info!("rate-limit counters are in-process"),
    }
    let followers = store.followers().clone();
    match store.backends().await {
        Ok(backends) => backends.iter().for_each(upstream_tls::warn_if_unverified),
        Err(error) => tracing::warn!(%error, "cannot read the backends to check their TLS"),
    }
    let xds = Arc::new(XdsPublisher::new());
    let default_health_check = Live::new(config.raw.pools.health_check);
    tokio::spawn(health_check::run(
        store.clone(),
        default_health_check.clone(),
        followers.routing.clone(),
    ));
    if let Some(ldap) = &config.login_methods.ldap {
        tokio::spawn(ldap_sync::run(store.clone(), ldap.clone(), tokens.clone()));
    }
    tokio::spawn(audit_retention::run(
        store.clone(),
        config.raw.audit.retention_days,
    ));
    tokio::spawn(reload_signing_keys(
        store.clone(),
        tokens.clone(),
        sealer.clone(),
    ));

    let live = LiveSettings {
        limits: Live::new(config.raw.limits.clone()),
        default_health_check,
        quotas: Live::new(config.quota_policy),
        lockout: Live::new(config.raw.login.lockout_policy()),
        address_failures: AddressFailures::new(
            counters.clone(),
            config.raw.login.address_failures_per_hour,
            config.raw.login.address_failures_burst,
        ),
    };
    let lockout = AccountLockout::new(live.lockout.clone(), store.clone(), hasher.clone());
    let http = AppState {
        store: store.clone(),
        hasher: hasher.clone(),
        key_prefix: config.raw.keys.prefix.clone().into(),
        key_rotation_grace_secs: config.raw.keys.rotation_grace_secs,
        metrics,
        tokens: tokens.clone(),
        sealer,
        sessions: Arc::new(SessionSettings {
            refresh_ttl_secs: sessions.refresh_token_ttl_secs.into(),
            key_publish_delay_secs: sessions.key_publish_delay_secs.into(),
            algorithm: config.session_algorithm,
            max_per_user: sessions.max_per_user,
        }),
        xds_nodes: xds.node_statuses(),
        pool_limits: PoolLimits {
            min_backends: config.raw.pools.min_backends,
            max_backends: config.raw.pools.max_backends,
        },
        default_health_check: live.default_health_check.clone(),
        counters: counters.clone(),
        quotas: live.quotas.clone(),
        passwords: PasswordWork::for_this_machine(config.argon2.clone()),
        password_policy: Arc::new(config.password_policy.clone()),
        login_methods: Arc::new(config.login_methods.clone()),
        oidc: Arc::new(
            OidcProviders::new(&config.login_methods.oidc)
                .context("cannot prepare the OpenID Connect providers' HTTP client")?,
        ),
        login_refusals: Arc::new(AuditSample::new(
            LOGIN_REFUSAL_AUDIT_INTERVAL,
            config.raw.limits.refusal_audits_per_minute,
            "tollgate_login_refusal_audits_skipped_total",
        )),
        lockout: lockout.clone(),
        mfa: Arc::new(config.mfa_policy.clone()),
        mfa_lockout: lockout.in_key_space(MFA_LOCKOUT_KEY_SPACE),
        address_failures: live.address_failures.clone(),
        self_service: Arc::new(config.self_service.clone()),
        mailer: config
            .mail
            .as_ref()
            .map(Mailer::new)
            .transpose()
            .context("cannot use the SMTP server (`mail.*`)")?,
        email_links: EmailLinks::new(&secret),
        mail_budget: MailBudget::new(counters.clone(), &config.self_service),
        access: Arc::new(AccessPolicy {
            trusted_hops: config.raw.http.trusted_hops,
            allowed_origins: config.raw.http.allowed_origins(),
        }),
    };
    let filter = FilterApi::new(
        store.clone(),
        hasher,
        tokens,
        followers.feed,
        LimitService::new(
            counters,
            Arc::new(SubjectLimits::new(store.clone(), live.limits.clone())),
            config.raw.limits.max_envoys,
        ),
        DataPlanePolicy {
            cache: config.raw.filter.clone(),
            limits: live.limits.clone(),
            quotas: live.quotas.clone(),
            user_labels: UserLabels::new(&config.raw.metrics.labelled_users),
        },
    );
    tokio::spawn(topology::run(
        store,
        xds.clone(),
        followers.routing,
        TopologyPolicy {
            fallback_to_default_pool: config.raw.routing.fallback_to_default_pool,
            upstream_ca_file: config.raw.routing.upstream_ca_file.clone(),
        },
    ));
    Ok(Services {
        http,
        filter,
        xds,
        admin,
        envoy_credential,
        live,
    })
}

/// Runs the control plane until SIGINT or SIGTERM, reloading the configuration (from `file`,
/// when one was given, and the environment) on SIGHUP and when the file changes.
pub async fn serve(
    config: ValidConfig,
    file: Option<PathBuf>,
    log: Arc<dyn LogFilter>,
) -> Result<()> {
    let http_listener = bind(config.http_listen, "http.listen").await?;
    let grpc_listener = bind(config.grpc_listen, "grpc.listen").await?;
    let store: Arc<dyn Store> = Arc::new(open_store(&config).await?);
    let services = services(&config, store.clone()).await?;
    report_bootstrap(services.admin);
    let reloader = Reloader::new(file.clone(), &config, services.live, log, store);
    tokio::spawn(reload::triggers::run(Arc::new(reloader), file));

    println!(
        "tollgate listening: http={} grpc={} database={}",
        config.http_listen,
        config.grpc_listen,
        redact(&config.database_url)
    );
    let http = axum::serve(
        http_listener,
        app(services.http).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    let grpc = serve_grpc(
        grpc_listener,
        Arc::new(services.filter),
        &services.xds,
        services.envoy_credential,
        shutdown_signal(),
    );
    tokio::try_join!(async { http.await.context("HTTP server failed") }, async {
        grpc.await.context("gRPC server failed")
    },)?;
    Ok(())
}

/// Serves ADS and the filter service on `listener` to Envoys that present `credential`, until
/// `shutdown` completes.
pub async fn serve_grpc(
    listener: TcpListener,
    filter: Arc<FilterApi>,
    xds: &XdsPublisher,
    credential: EnvoyCredential,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // Keepalives find Envoys that vanished without closing their streams.
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT))
        .trace_fn(grpc_span)
        .layer(InterceptorLayer::new(credential))
        .add_service(FilterServiceServer::from_arc(filter))
        .add_service(xds.service())
        .serve_with_incoming_shutdown(tokio_stream_from(listener), shutdown)
        .await
}

/// The span a gRPC call is handled in: its method and, for a call the filter makes on behalf
/// of a client request, that request's `x-request-id`.
fn grpc_span(request: &axum::http::Request<()>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| CorrelationId::parse(value.as_bytes()));
    let span = tracing::info_span!(
        "grpc",
        method = %request.uri().path(),
        request_id = tracing::field::Empty,
    );
    if let Some(id) = request_id {
        span.record("request_id", id.as_str());
    }
    span
}

const GRPC_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const GRPC_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Another replica may rotate the signing keys; pick its keys up within this long.
const SIGNING_KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(10);

async fn reload_signing_keys(store: Arc<dyn Store>, tokens: SessionTokens, sealer: Sealer) {
    let mut interval = tokio::time::interval(SIGNING_KEY_RELOAD);
    loop {
        interval.tick().await;
        match store.signing_keys().await {
            Ok(records) => {
                if let Err(error) = tokens.reload(records, &sealer, store.followers()) {
                    tracing::error!(%error, "cannot load the signing keys");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot reload the signing keys"),
        }
    }
}

fn tokio_stream_from(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

async fn bind(address: SocketAddr, key: &str) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (`{key}`)"))
}

fn report_bootstrap(outcome: AdminBootstrap) {
    match outcome {
        AdminBootstrap::Unchanged => {}
        AdminBootstrap::ImportedKey => {
            tracing::info!("imported the configured bootstrap key for user admin");
        }
        AdminBootstrap::GeneratedKey(key) => {
            println!(
                "created user admin; its API key is shown only this once:\n  {}",
                key.expose()
            );
        }
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_in_database_urls() {
        assert_eq!(
            redact("postgres://tollgate:hunter2@db:5432/tollgate"),
            "postgres://tollgate:***@db:5432/tollgate"
        );
        assert_eq!(redact("sqlite://data/t.db"), "sqlite://data/t.db");
        assert_eq!(
            redact("postgres://tollgate@db/x"),
            "postgres://tollgate@db/x"
        );
    }
}
