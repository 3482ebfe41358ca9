//! The command line: `crosswalk serve`, `demo`, `migrate`, `keys generate`, `token issue`,
//! `policy test`, `policy eval`, `audit verify`, `audit checkpoint`.
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
    /// Seed synthetic partners' data into a demo database (`sqlite://data/demo.db`
    /// unless DATABASE_URL says otherwise; once), then serve and print tokens
    /// and curl commands to try the exchange with.
    Demo {
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
    /// The release policy: the Rego bundle in `policy.dir`.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log: verify the chain, sign a checkpoint.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Link two CSV files offline, one to one, with the probabilistic linker;
    /// prints CSV `left_id,right_id,weight,decision` (`match` or `review`).
    Link {
        left: PathBuf,
        right: PathBuf,
        /// A column carried through to the output, never hashed.
        #[arg(long)]
        id_column: String,
        /// FIELD=COLUMN, once per identifier field (`given_name`, `surname`, `dob`,
        /// `sex`, `street`, `city`, `state`, `zip`, `phone`, `email`).
        #[arg(long = "map", required = true)]
        map: Vec<crate::linkage::offline::FieldMapping>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a fresh key set and example configuration into DIR (laid out like keys-example/).
    Generate { dir: PathBuf },
    /// Re-derive every stored linkage token under a new master secret, keeping every
    /// link. Run with the gateway stopped; safe to re-run after an interruption.
    Rotate {
        /// The new master secret (64 hex digits). Created, mode 0600, if it does not
        /// exist. Afterwards, point `keys.master_secret` at it.
        #[arg(long)]
        new_master_secret: PathBuf,
        /// Identities re-derived per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the whole chain and check it against the latest signed checkpoint,
    /// and every audited row (referrals, assignments, outcomes, cases,
    /// consents, exports) against its create entry; prints the count and head
    /// hash, or exits 2 naming the first bad entry, or the tables and counts of
    /// rows and create entries that do not account for each other.
    Verify {
        /// Also check every checkpoint in this witness file (one per line, as
        /// `audit.checkpoint_file` holds them).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The gateway's public key (SPKI PEM) to check signatures with; by
        /// default the public half of `keys.signing_key`.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Sign the current chain head now, store it, append it to
    /// `audit.checkpoint_file` and print its line.
    Checkpoint,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Run the bundle's Rego tests with the gateway's engine and data; prints each
    /// failure and `N passed, M failed`, and exits non-zero on a failure.
    Test,
    /// Print the decision (JSON, with the policy version) for the input document
    /// in FILE, as policies/CONTRACT.md describes it.
    Eval {
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
    },
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

/// The exit status of `audit verify` when the chain is not intact, so that
/// scripts can tell tampering from a verifier that could not run (1).
pub const EXIT_TAMPERED: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crosswalk: {e:#}");
            match e.downcast_ref::<crate::audit::verify::VerifyError>() {
                Some(
                    crate::audit::verify::VerifyError::Tampered(_)
                    | crate::audit::verify::VerifyError::Unaccounted(_)
                    | crate::audit::verify::VerifyError::BadCheckpoint { .. },
                ) => ExitCode::from(EXIT_TAMPERED),
                _ => ExitCode::FAILURE,
            }
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
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    new_master_secret,
                    batch_size,
                },
        } => {
            let config = load_config(&cli.config)?;
            runtime()?.block_on(rotate_keys(&config, &new_master_secret, batch_size))
        }
        Command::Token {
            command: TokenCommand::Issue { partner, ttl, key },
        } => {
            let config = load_config(&cli.config)?;
            let key = key.unwrap_or_else(|| {
                config.key_path(Path::new(&format!("partners/{partner}.key.pem")))
            });
            let token = crate::auth::issue_token(
                &config,
                &partner,
                &key,
                ttl,
                (&crate::clock::SystemClock, &crate::randomness::OsRandomness),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Policy { command } => {
            let config = load_config(&cli.config)?;
            let dir = config.key_path(&config.policy.dir);
            let mut out = std::io::stdout().lock();
            match command {
                PolicyCommand::Test => crate::policy::commands::test(&dir, &mut out),
                PolicyCommand::Eval { input } => {
                    crate::policy::commands::eval(&dir, &input, &mut out)
                }
            }
        }
        Command::Audit { command } => {
            let config = load_config(&cli.config)?;
            runtime()?.block_on(audit_command(&config, command))
        }
        Command::Link {
            left,
            right,
            id_column,
            map,
        } => {
            let config = load_config(&cli.config)?;
            let request = crate::linkage::offline::LinkFiles {
                left: &left,
                right: &right,
                id_column: &id_column,
                map: &map,
            };
            crate::linkage::offline::run_cli(&config, &request)
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
        Command::Demo { listen } => {
            let mut config = load_config(&cli.config)?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            let invocation = crate::demo::Invocation {
                database_from_env: crate::demo::use_demo_storage(&mut config, &|name| {
                    std::env::var_os(name)
                }),
                config: (cli.config != Path::new(DEFAULT_CONFIG_PATH)).then_some(cli.config),
            };
            crate::telemetry::init();
            runtime()?.block_on(crate::demo::run(config, invocation))
        }
    }
}

async fn rotate_keys(config: &Config, new_secret: &Path, batch_size: i64) -> anyhow::Result<()> {
    use crate::clock::Clock as _;
    let keys = crate::secrets::GatewayKeys::load(config)?;
    let new_master =
        crate::secrets::MasterSecret::load_or_create(new_secret, &crate::randomness::OsRandomness)
            .with_context(|| format!("the new master secret {}", new_secret.display()))?;
    let store = crate::store::Store::connect(&config.server.database_url).await?;
    store.migrate().await?;
    let vault = crate::vault::Vault::new(
        keys.vault.clone(),
        store.clone(),
        crate::vault::RotationPolicy::default(),
        crate::randomness::os(),
    );
    let options = crate::normalize::NormalizeOptions::new(
        config.linkage.phone_region(),
        crate::clock::SystemClock.now().date_naive(),
    );
    let rotation = crate::subjects::RotationOptions {
        batch_size,
        max_batches: None,
    };
    let report = crate::subjects::rotate_keys(
        &store,
        &vault,
        &keys.master,
        &new_master,
        &options,
        rotation,
    )
    .await?;
    store.close().await;
    if report.already_done {
        println!(
            "the database is already on this master secret (key version {})",
            report.key_version
        );
    } else {
        println!(
            "re-derived {} identities under key version {}",
            report.identities, report.key_version
        );
    }
    println!(
        "now set keys.master_secret to {} (or CROSSWALK_KEYS__MASTER_SECRET) and restart",
        new_secret.display()
    );
    Ok(())
}

async fn audit_command(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    use crate::audit::checkpoint::{CheckpointSigner, Checkpointer, GatewayPublicKey, When};
    let store = crate::store::Store::connect(&config.server.database_url).await?;
    let result = match command {
        AuditCommand::Verify {
            checkpoint,
            public_key,
        } => {
            let key = match public_key {
                Some(path) => {
                    let pem = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    GatewayPublicKey::from_pem(&pem)
                        .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))?
                }
                None => GatewayPublicKey::from_config(config)?,
            };
            crate::audit::verify::verify(&store, &key, checkpoint.as_deref())
                .await
                .map(|verified| print_verified(&verified, checkpoint.as_deref()))
                .map_err(anyhow::Error::from)
        }
        AuditCommand::Checkpoint => {
            // Verifying only reads; signing writes, so it brings the schema up to date.
            store.migrate().await?;
            let checkpointer = Checkpointer::new(
                store.clone(),
                std::sync::Arc::new(CheckpointSigner::load(config)?),
                std::sync::Arc::new(crate::clock::SystemClock),
                config.audit.checkpoint_file.clone(),
            );
            checkpointer
                .checkpoint(When::Always)
                .await
                .map(|made| {
                    if let Some(checkpoint) = made {
                        println!("{}", checkpoint.witness_line());
                    }
                })
                .map_err(anyhow::Error::from)
        }
    };
    store.close().await;
    result
}

fn print_verified(verified: &crate::audit::verify::Verified, witness: Option<&Path>) {
    println!(
        "audit log intact: {} entries, head hash {}",
        verified.entries,
        hex::encode(verified.head_hash)
    );
    match verified.database_checkpoint {
        Some((seq, at)) => println!(
            "matches the latest signed checkpoint in the database (entry {seq}, signed at {})",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => eprintln!(
            "warning: the database holds no signed checkpoint, so a cut-off tail would go \
             unnoticed; run `crosswalk audit checkpoint` and keep the witness file"
        ),
    }
    if let Some(path) = witness {
        println!(
            "matches all {} checkpoints in {}",
            verified.witness_checkpoints,
            path.display()
        );
    }
    if let Some(rows) = &verified.rows {
        let counts: Vec<String> = rows
            .iter()
            .map(|(set, count)| format!("{count} {}", set.label()))
            .collect();
        println!(
            "every audited row has its create entry and every create entry its row: {}",
            counts.join(", ")
        );
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
