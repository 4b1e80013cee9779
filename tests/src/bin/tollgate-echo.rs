//! `tollgate-echo`: the demo upstream backend. Answers every method and path with
//! `200 application/json` describing the request it received, so tests and users can see what
//! Envoy forwarded (which backend, and which headers the filter added or stripped). With a
//! certificate it speaks HTTPS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::serve::Listener;
use axum::{Json, Router};
use clap::Parser;
use http_body_util::BodyExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Echo every HTTP request back as JSON.
#[derive(Debug, Parser)]
#[command(name = "tollgate-echo", version)]
struct Args {
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:48080")]
    listen: SocketAddr,

    /// Serve on this inherited descriptor, a TCP socket its parent already bound and made
    /// listen, instead of binding `--listen`.
    #[arg(long, conflicts_with = "listen")]
    listen_fd: Option<RawFd>,

    /// Name reported as `backend` in every answer.
    #[arg(long, default_value = "backend")]
    name: String,

    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls_acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(err) => {
                eprintln!("tollgate-echo: cannot use {}: {err}", cert.display());
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let listener = match listener(&args).await {
        Ok(listener) => listener,
        Err(err) => {
            match args.listen_fd {
                Some(fd) => eprintln!("tollgate-echo: cannot serve on descriptor {fd}: {err}"),
                None => eprintln!("tollgate-echo: cannot listen on {}: {err}", args.listen),
            }
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(args.listen);
    println!("listening on {bound}");

    let app = Router::new()
        .fallback(echo)
        .with_state(Arc::<str>::from(args.name));
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
        Some(acceptor) => {
            axum::serve(TlsListener { listener, acceptor }, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tollgate-echo: server error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn listener(args: &Args) -> std::io::Result<tokio::net::TcpListener> {
    let Some(fd) = args.listen_fd else {
        return tokio::net::TcpListener::bind(args.listen).await;
    };
    // SAFETY: `--listen-fd` names a descriptor the parent handed over for this process to own,
    // and nothing else here opens or uses it.
    #[allow(unsafe_code)]
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    // A descriptor that is not a socket fails here rather than when serving.
    listener.local_addr()?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// A TLS server of one certificate chain and key.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| err.to_string())?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|err| err.to_string())?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| err.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections that completed a TLS handshake; a failed handshake is logged and dropped.
struct TlsListener {
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = Listener::accept(&mut self.listener).await;
            match self.acceptor.accept(stream).await {
                Ok(tls) => return (tls, peer),
                Err(err) => eprintln!("tollgate-echo: TLS handshake with {peer} failed: {err}"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Listener::local_addr(&self.listener)
    }
}

/// A request header asking the echo to report storage, as a storage backend would.
const STORAGE_REQUEST_HEADER: &str = "x-echo-storage-bytes";
/// How an upstream reports storage it added (or freed) to the gateway.
const STORAGE_REPORT_HEADER: &str = "x-tollgate-storage-bytes";

/// Answers with a description of the request. Like a storage backend, it reports storage
/// only for a request that changed some (here: one that asked it to report).
async fn echo(State(name): State<Arc<str>>, request: Request) -> (HeaderMap, Json<Value>) {
    let (parts, body) = request.into_parts();
    let mut report = HeaderMap::new();
    if let Some(storage) = parts.headers.get(STORAGE_REQUEST_HEADER) {
        report.insert(STORAGE_REPORT_HEADER, storage.clone());
    }
    drain(body).await;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    (
        report,
        Json(json!({
            "backend": &*name,
            "method": parts.method.as_str(),
            "path": path,
            "headers": headers_json(&parts.headers),
        })),
    )
}

/// Reads the request body to its end without keeping it, so the connection can be reused.
async fn drain(mut body: Body) {
    while let Some(Ok(_frame)) = body.frame().await {}
}

/// Header names (already lowercase in `http`) to values; repeated headers joined with ", ".
fn headers_json(headers: &HeaderMap) -> BTreeMap<&str, String> {
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    // Without a SIGTERM handler the default action (exit) still applies.
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
