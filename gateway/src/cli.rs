//! The command line: `crosswalk serve`, `migrate`, `keys generate`, `token issue`.
//!
//! Each command is a thin function that loads what it needs and calls the domain.
//! Errors are printed once, on stderr, as `crosswalk: <what failed>: <why>`, and the
//! process exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{CONFIG_PATH_VAR, Config, DEFAULT_CONFIG_PATH};

#[derive(Debug, Parser)]
#[command(
    name = "crosswalk",
    version,
    about = "Privacy-preserving data exchange gateway"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = CONFIG_PATH_VAR, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the gateway (TLS on 127.0.0.1:8443 by default).
    Serve {
        /// Address to listen on, overriding `server.listen`. Port 0 picks a free port.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Apply database migrations to DATABASE_URL (or `server.database_url`) and exit.
    Migrate,
    /// Key material.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Partner tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a fresh key set and example configuration into DIR (laid out like keys-example/).
    Generate { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Mint a partner JWT for development, signed with the partner's key.
    Issue {
        #[arg(long)]
        partner: String,
        /// Lifetime, e.g. 15m, 1h, 3600s.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        /// The partner's Ed25519 private key (PKCS#8 PEM); by default
        /// `partners/ID.key.pem` beside the configuration file.
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crosswalk: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keys {
            command: KeysCommand::Generate { dir },
        } => {
            crate::keys::generate(&dir)
                .with_context(|| format!("generating keys in {}", dir.display()))?;
            println!("wrote a development key set to {}", dir.display());
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Issue { partner, ttl, key },
        } => {
            let config = load_config(&cli.config)?;
            let key = key.unwrap_or_else(|| {
                config.key_path(Path::new(&format!("partners/{partner}.key.pem")))
            });
            let token =
                crate::auth::issue_token(&config, &partner, &key, ttl, &crate::clock::SystemClock)?;
            println!("{token}");
            Ok(())
        }
        Command::Migrate => {
            let config = load_config(&cli.config)?;
            runtime()?.block_on(async {
                let store = crate::store::Store::connect(&config.server.database_url).await?;
                store.migrate().await?;
                println!("migrations applied to {}", store.backend());
                anyhow::Ok(())
            })
        }
        Command::Serve { listen } => {
            let mut config = load_config(&cli.config)?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            crate::telemetry::init();
            runtime()?.block_on(crate::server::serve(config))
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 15m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}
