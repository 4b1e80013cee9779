//! Admin writes under contention: the release control plane on SQLite, then on Postgres, with
//! concurrent writers creating backends (and changing backends and pool settings) through the
//! admin HTTP API, and one reader listing them meanwhile. Every backend points at a loopback
//! port nothing listens on, so the health checker records a failure for each on every check.
//! Prints each kind of request's count, p50, p99 and maximum latency and its answers other
//! than 2xx; exits non-zero when there were any.
//!
//!   tollgate-bench-admin-writes [--writers 32] [--seconds 60] [--database sqlite|postgres]...

use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use tollgate_e2e::control_plane::{fresh_postgres_database, ADMIN_KEY};
use tollgate_e2e::latency::{millis, percentile};
use tollgate_e2e::{ControlPlane, ControlPlaneOptions, Layout, Port};

/// The default `pools.max_backends`: each writer fills a pool, then starts the next.
const BACKENDS_PER_POOL: usize = 10;
/// Of every this many writes, one changes a backend the writer created before.
const CHANGE_EVERY: usize = 5;
/// Of every this many writes, one sets the health checks of the writer's current pool.
const POOL_SETTINGS_EVERY: usize = 25;
const READ_PAUSE: Duration = Duration::from_millis(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const ERRORS_SHOWN: usize = 5;

#[derive(Parser)]
struct Args {
    /// Concurrent admin writers.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// How long the writers write, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The databases to measure, one after the other.
    #[arg(long, value_enum, default_values_t = [Database::Sqlite, Database::Postgres])]
    database: Vec<Database>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    CreateBackend,
    ChangeBackend,
    SetPool,
    Read,
}

const WRITES: [Kind; 3] = [Kind::CreateBackend, Kind::ChangeBackend, Kind::SetPool];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::CreateBackend => "create backend",
            Self::ChangeBackend => "change backend",
            Self::SetPool => "set pool checks",
            Self::Read => "read (list)",
        }
    }
}

/// One request's outcome.
struct Sample {
    kind: Kind,
    latency: Duration,
    /// The HTTP status, or 0 when no answer came.
    status: u16,
    body: String,
}

impl Sample {
    fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The admin API of one control plane, over kept-alive connections.
#[derive(Clone)]
struct Admin {
    client: Client,
    base: String,
}

impl Admin {
    fn new(control_plane: &ControlPlane, connections: usize) -> Self {
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(connections)
            .build()
            .expect("HTTP client");
        Self {
            client,
            base: control_plane.url(""),
        }
    }

    fn send(&self, kind: Kind, method: Method, path: &str, body: Option<Value>) -> Sample {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started = Instant::now();
        let (status, body) = match request.send() {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().unwrap_or_default())
            }
            Err(error) => (0, error.to_string()),
        };
        Sample {
            kind,
            latency: started.elapsed(),
            status,
            body,
        }
    }
}

/// Writes until `until`: backends into pools of its own, a change of one of them now and then,
/// and now and then its pool's health-check settings.
fn write(admin: &Admin, writer: usize, unreachable_port: u16, until: Instant) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut created: Vec<String> = Vec::new();
    let mut writes = 0;
    while Instant::now() < until {
        writes += 1;
        let pool = format!("bench-{writer}-{}", created.len() / BACKENDS_PER_POOL);
        let sample = if writes % POOL_SETTINGS_EVERY == 0 {
            admin.send(
                Kind::SetPool,
                Method::PUT,
                &format!("/api/v1/pools/{pool}"),
                Some(json!({"interval_secs": 30, "timeout_secs": 2})),
            )
        } else if writes % CHANGE_EVERY == 0 && !created.is_empty() {
            let id = &created[writes % created.len()];
            admin.send(
                Kind::ChangeBackend,
                Method::PATCH,
                &format!("/api/v1/backends/{id}"),
                Some(json!({"weight": 1 + writes % 100})),
            )
        } else {
            let sample = admin.send(
                Kind::CreateBackend,
                Method::POST,
                "/api/v1/backends",
                Some(json!({
                    "url": format!("http://127.0.0.1:{unreachable_port}"),
                    "pool": pool,
                })),
            );
            if let Some(id) = serde_json::from_str::<Value>(&sample.body)
                .ok()
                .and_then(|backend| backend["id"].as_str().map(str::to_string))
            {
                created.push(id);
            }
            sample
        };
        samples.push(sample);
    }
    samples
}

/// Lists backends page by page, and the pools, until `until`.
fn read(admin: &Admin, until: Instant) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut page = 1;
    while Instant::now() < until {
        let sample = admin.send(
            Kind::Read,
            Method::GET,
            &format!("/api/v1/backends?page={page}&per_page=50"),
            None,
        );
        let total = serde_json::from_str::<Value>(&sample.body)
            .ok()
            .and_then(|list| list["total"].as_u64())
            .unwrap_or(0);
        page = if page * 50 >= total { 1 } else { page + 1 };
        samples.push(sample);
        samples.push(admin.send(Kind::Read, Method::GET, "/api/v1/pools", None));
        thread::sleep(READ_PAUSE);
    }
    samples
}

/// Runs the writers and the reader against a fresh control plane; every request's outcome.
fn measure(database: Database, args: &Args) -> Vec<Sample> {
    let postgres = (database == Database::Postgres).then(fresh_postgres_database);
    let options = ControlPlaneOptions {
        database_url: postgres.as_ref().map(|db| db.url.clone()),
        env: vec![("TOLLGATE_LOG".into(), "warn".into())],
    };
    let control_plane = ControlPlane::start(&Layout::release_control_plane(), options);
    let unreachable = Port::reserve();
    let admin = Arc::new(Admin::new(&control_plane, args.writers + 1));
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut threads = Vec::new();
    for writer in 0..args.writers {
        let admin = Arc::clone(&admin);
        let port = unreachable.number();
        threads.push(thread::spawn(move || write(&admin, writer, port, until)));
    }
    let reader = Arc::clone(&admin);
    threads.push(thread::spawn(move || read(&reader, until)));
    let samples: Vec<Sample> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("a writer panicked"))
        .collect();
    drop(control_plane);
    samples
}

/// One row of the table: `samples` counted and their latency.
fn row(database: Database, what: &str, samples: &[&Sample], seconds: u64) {
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    if latencies.is_empty() {
        return;
    }
    latencies.sort();
    let failed = samples.iter().filter(|s| !s.succeeded()).count();
    println!(
        "| {} | {what} | {} | {:.0} | {} | {} | {} | {failed} |",
        database.name(),
        latencies.len(),
        latencies.len() as f64 / seconds as f64,
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.99)),
        millis(percentile(&latencies, 1.0)),
    );
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for &database in &args.database {
        eprintln!(
            "bench: {} writers for {} s on {}",
            args.writers,
            args.seconds,
            database.name()
        );
        let samples = measure(database, &args);
        failures.extend(
            samples
                .iter()
                .filter(|s| !s.succeeded())
                .take(ERRORS_SHOWN)
                .map(|s| {
                    format!(
                        "{} {}: {} {}",
                        database.name(),
                        s.kind.name(),
                        s.status,
                        s.body
                    )
                }),
        );
        rows.push((database, samples));
    }
    println!(
        "\nAdmin writes: {} concurrent writers and 1 reader for {} s each, release build\n",
        args.writers, args.seconds
    );
    println!("| database | requests | count | per s | p50 ms | p99 ms | max ms | non-2xx |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (database, samples) in &rows {
        let writes: Vec<&Sample> = samples.iter().filter(|s| s.kind != Kind::Read).collect();
        row(*database, "all writes", &writes, args.seconds);
        for kind in WRITES.into_iter().chain([Kind::Read]) {
            let of_kind: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
            row(*database, kind.name(), &of_kind, args.seconds);
        }
    }
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("\nAnswers other than 2xx (the first {ERRORS_SHOWN} per database):");
    for failure in failures {
        println!("  {failure}");
    }
    ExitCode::FAILURE
}
