//! Logins under load: the release control plane on SQLite. First what a login costs: clients
//! logging in with the right password as fast as they are answered (each login is one Argon2id
//! verification), one client and then one per core. Then two floods of wrong passwords for
//! unknown names while a prober asks `GET /api/v1/health` every 10 ms: from one address (the
//! per-address budget refuses most of it before any hashing), and from a new address for every
//! request (`X-Forwarded-For` behind one trusted hop: every attempt reaches the hashing, and
//! only its bound protects the rest of the API). Prints logins per second, each flood's answers
//! by status, the health p50/p99/max during it, and the control plane's peak RSS.
//!
//!   tollgate-bench-logins [--flooders 64] [--seconds 10]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::blocking::Client;
use serde_json::json;
use tollgate_e2e::latency::{millis, percentile};
use tollgate_e2e::{ControlPlane, ControlPlaneOptions, Layout};

const USERNAME: &str = "bench-login";
const PASSWORD: &str = "a-Long-enough-bench-passphrase-42";
const PROBE_EVERY: Duration = Duration::from_millis(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The figure a flood must keep health under, at p99.
const HEALTH_P99_TARGET: Duration = Duration::from_millis(10);

#[derive(Parser)]
struct Args {
    /// Concurrent clients sending wrong passwords.
    #[arg(long, default_value_t = 64)]
    flooders: usize,
    /// How long each phase lasts, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Where a flood's attempts come from.
#[derive(Clone, Copy)]
enum Origin {
    OneAddress,
    AddressPerRequest,
}

fn client() -> Client {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// Status of one login attempt, or 0 when no answer came.
fn log_in(client: &Client, url: &str, username: &str, password: &str, from: Option<String>) -> u16 {
    let mut request = client
        .post(url)
        .json(&json!({"username": username, "password": password}));
    if let Some(address) = from {
        request = request.header("x-forwarded-for", address);
    }
    request
        .send()
        .map(|answer| answer.status().as_u16())
        .unwrap_or(0)
}

/// Runs `clients` threads calling `attempt(client, thread, n)` until `seconds` pass; every
/// answer's status, counted.
fn run(
    clients: usize,
    seconds: u64,
    attempt: impl Fn(&Client, usize, usize) -> u16 + Send + Sync + 'static,
) -> BTreeMap<u16, usize> {
    let attempt = Arc::new(attempt);
    let until = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|index| {
            let attempt = Arc::clone(&attempt);
            thread::spawn(move || {
                let client = client();
                let mut statuses = BTreeMap::new();
                let mut n = 0;
                while Instant::now() < until {
                    *statuses.entry(attempt(&client, index, n)).or_insert(0) += 1;
                    n += 1;
                }
                statuses
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for thread in threads {
        for (status, count) in thread.join().expect("a client panicked") {
            *all.entry(status).or_insert(0) += count;
        }
    }
    all
}

/// Health answers' latencies (and how many were not 200) until `stop` is set.
fn probe_health(url: String, stop: Arc<AtomicBool>) -> (Vec<Duration>, usize) {
    let client = client();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let ok = client
            .get(&url)
            .send()
            .is_ok_and(|answer| answer.status().is_success());
        latencies.push(started.elapsed());
        failed += usize::from(!ok);
        thread::sleep(PROBE_EVERY.saturating_sub(started.elapsed()));
    }
    latencies.sort();
    (latencies, failed)
}

/// A `/proc/<pid>/status` figure in MB (`VmHWM`: the peak RSS so far).
fn memory_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn statuses(counts: &BTreeMap<u16, usize>) -> String {
    counts
        .iter()
        .map(|(status, count)| format!("{count} x {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A flood from `origin` with the health prober beside it; whether health held.
fn flood(control_plane: &ControlPlane, args: &Args, origin: Origin) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (url, stop) = (control_plane.url("/api/v1/health"), Arc::clone(&stop));
        thread::spawn(move || probe_health(url, stop))
    };
    let url = control_plane.url("/api/v1/auth/login");
    let counts = run(args.flooders, args.seconds, move |client, index, n| {
        let from = match origin {
            Origin::OneAddress => None,
            Origin::AddressPerRequest => {
                Some(format!("10.{}.{}.{}", index, (n / 250) % 250, n % 250 + 1))
            }
        };
        log_in(client, &url, &format!("nobody-{index}-{n}"), "wrong", from)
    });
    stop.store(true, Ordering::Relaxed);
    let (health, failed) = prober.join().expect("the prober panicked");
    let attempts: usize = counts.values().sum();
    let p99 = percentile(&health, 0.99);
    let name = match origin {
        Origin::OneAddress => "one address",
        Origin::AddressPerRequest => "an address per request",
    };
    println!(
        "| flood from {name} | {} | {attempts} | {:.0} | {} | {} | {} | {} | {failed} | {:.0} |",
        args.flooders,
        attempts as f64 / args.seconds as f64,
        statuses(&counts),
        millis(percentile(&health, 0.5)),
        millis(p99),
        millis(percentile(&health, 1.0)),
        control_plane
            .pid()
            .map_or(0.0, |pid| memory_mb(pid, "VmHWM:")),
    );
    failed == 0 && !counts.contains_key(&500) && !counts.contains_key(&0)
}

/// Correct logins from `clients` clients; prints their rate and latency.
fn logins(control_plane: &ControlPlane, clients: usize, seconds: u64) -> bool {
    let url = control_plane.url("/api/v1/auth/login");
    let started = Instant::now();
    let counts = run(clients, seconds, move |client, _, _| {
        log_in(client, &url, USERNAME, PASSWORD, None)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let attempts: usize = counts.values().sum();
    let ok = counts.get(&200).copied().unwrap_or(0);
    println!(
        "| correct password | {clients} | {attempts} | {:.1} | {} | | {:.1} ms per login and client | | | {:.0} |",
        ok as f64 / elapsed,
        statuses(&counts),
        1000.0 * elapsed * clients as f64 / attempts.max(1) as f64,
        control_plane.pid().map_or(0.0, |pid| memory_mb(pid, "VmHWM:")),
    );
    ok == attempts
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = ControlPlaneOptions::with_env(&[
        ("TOLLGATE_LOG", "warn"),
        ("TOLLGATE_HTTP__TRUSTED_HOPS", "1"),
    ]);
    let control_plane = ControlPlane::start(&Layout::release_control_plane(), options);
    control_plane.create_user_with(json!({"username": USERNAME, "password": PASSWORD}));
    let cores = thread::available_parallelism().map_or(1, usize::from);
    println!(
        "\nLogins: release control plane on SQLite, {cores} cores, {} s per row\n",
        args.seconds
    );
    println!(
        "| what | clients | attempts | per s | answers | health p50 ms | health p99 ms | health max ms | health failures | peak RSS MB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut good = logins(&control_plane, 1, args.seconds);
    good &= logins(&control_plane, cores, args.seconds);
    good &= flood(&control_plane, &args, Origin::OneAddress);
    good &= flood(&control_plane, &args, Origin::AddressPerRequest);
    println!(
        "\nTarget: health p99 under {} ms during each flood.",
        millis(HEALTH_P99_TARGET)
    );
    if good {
        ExitCode::SUCCESS
    } else {
        println!(
            "A login that should have succeeded failed, or health or a login went unanswered."
        );
        ExitCode::FAILURE
    }
}
