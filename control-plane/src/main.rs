//! The `tollgate` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand};
use tollgate::accounts::bootstrap;
use tollgate::config::Config;
use tollgate::server;
use tollgate::store::AuditLog;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "Tollgate control plane")]
struct Cli {
    /// YAML configuration file; every key can also be set as TOLLGATE_SECTION__KEY.
    #[arg(long, global = true, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (admin API, filter service).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and exit.
    CheckConfig,
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that no entry was altered, removed or inserted around the control plane; exits
    /// non-zero naming the first that was.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    bootstrap::warn_if_weak(config.raw.bootstrap.admin_api_key.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve => runtime.block_on(server::serve(config, cli.config)),
        Command::Migrate => runtime.block_on(async {
            server::open_store(&config).await?;
            println!(
                "database is up to date: {}",
                server::redact(&config.database_url)
            );
            Ok(())
        }),
        Command::CheckConfig => {
            println!("configuration is valid");
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => runtime.block_on(async {
            let store = server::open_store(&config).await?;
            match store.verify_audit_chain().await? {
                Ok(entries) => {
                    println!("audit log intact: {entries} entries in an unbroken chain");
                    Ok(())
                }
                Err(broken) => bail!("audit log tampered with: {broken}"),
            }
        }),
    }
}
