//! The `tollgate` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::{Parser, Subcommand};
use tollgate::accounts::bootstrap;
use tollgate::config::Config;
use tollgate::logging;
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

/// The process's log filter, which a configuration reload may replace; `TOLLGATE_LOG` (or
/// [`DEFAULT_LOG_FILTER`]) when the configuration sets none.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli, Arc::new(logging::LogLevel)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, log: Arc<dyn tollgate::reload::LogFilter>) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    logging::init(&config.raw.log);
    bootstrap::warn_if_weak(config.raw.bootstrap.admin_api_key.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve => runtime.block_on(server::serve(config, cli.config, log)),
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
