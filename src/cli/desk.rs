//! `community-sync review serve` and `review users …`: the review desk and its accounts.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::cli::out::outln;
use crate::config::Config;
use crate::desk::{self, accounts, Desk, Listen};
use crate::store::Store;

/// Where `review serve` listens unless told otherwise (and what printed links point at).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Listen on this Unix socket instead (for a reverse proxy on the same host).
    #[arg(long, conflicts_with = "listen")]
    pub socket: Option<PathBuf>,
    /// Allow a non-loopback --listen address (put TLS in front of it).
    #[arg(long)]
    pub allow_remote: bool,
    /// Minutes of inactivity after which a session ends.
    #[arg(long, default_value_t = 30)]
    pub session_minutes: u64,
    /// Hours after which a session ends however active.
    #[arg(long, default_value_t = 12)]
    pub session_max_hours: u64,
    /// Mark cookies Secure (when a proxy serves the desk over HTTPS).
    #[arg(long)]
    pub secure_cookies: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Add a reviewer and print a one-time sign-in link (or read a password from stdin).
    Add {
        /// The reviewer's sign-in name.
        name: String,
        /// A community the reviewer may see (repeat for several; none: every community).
        #[arg(long = "community")]
        communities: Vec<String>,
        /// Read the password from standard input instead of printing a link.
        #[arg(long)]
        password_stdin: bool,
        /// The desk's address as reviewers reach it, for the printed link.
        #[arg(long, default_value_t = format!("http://{DEFAULT_LISTEN}"))]
        url: String,
        /// Hours the link stays valid.
        #[arg(long, default_value_t = 24)]
        link_hours: u64,
    },
    /// List reviewers.
    List,
    /// Print a new one-time sign-in link (the reviewer sets a new password with it).
    Link {
        /// The reviewer's sign-in name.
        name: String,
        /// The desk's address as reviewers reach it, for the printed link.
        #[arg(long, default_value_t = format!("http://{DEFAULT_LISTEN}"))]
        url: String,
        /// Hours the link stays valid.
        #[arg(long, default_value_t = 24)]
        link_hours: u64,
    },
    /// Set a reviewer's password from standard input.
    Password {
        /// The reviewer's sign-in name.
        name: String,
    },
    /// Replace the communities a reviewer may see (none: every community).
    Communities {
        /// The reviewer's sign-in name.
        name: String,
        /// A community the reviewer may see (repeat for several).
        #[arg(long = "community")]
        communities: Vec<String>,
    },
    /// Disable a reviewer (their decisions stay on record; their sessions end).
    Disable {
        /// The reviewer's sign-in name.
        name: String,
    },
}

pub fn serve(config: &Config, args: &ServeArgs) -> anyhow::Result<()> {
    let listen = match &args.socket {
        Some(p) => Listen::Unix(p.clone()),
        None => {
            if !args.listen.ip().is_loopback() && !args.allow_remote {
                anyhow::bail!(
                    "--listen {} is not a loopback address: the desk shows personal data; put it behind a TLS proxy (--socket) or pass --allow-remote",
                    args.listen
                );
            }
            Listen::Tcp(args.listen)
        }
    };
    let store = Store::open_configured(config)?;
    let opts = desk::Options {
        life: desk::Lifetimes {
            idle: Duration::from_secs(args.session_minutes.max(1) * 60),
            max: Duration::from_secs(args.session_max_hours.max(1) * 3600),
        },
        secure_cookies: args.secure_cookies,
        ..desk::Options::default()
    };
    let d = Desk {
        store: Arc::new(Mutex::new(store)),
        config: Arc::new(config.clone()),
        opts: Arc::new(opts),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let bound = desk::bind(&listen).await?;
        let at = bound.listen();
        tracing::info!(listen = %at, "review desk listening");
        outln!("review desk on {at} (Ctrl-C stops it)");
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        desk::serve(d, bound, stop).await?;
        Ok::<_, anyhow::Error>(())
    })
}

fn read_password() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the password from standard input")?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn print_link(url: &str, token: &str, name: &str, hours: u64) {
    outln!(
        "one-time sign-in link for {name} (valid {hours} h, works once; send it privately):\n{}/welcome/{token}",
        url.trim_end_matches('/')
    );
}

/// An account change, audited with the process's user as actor.
fn audited(
    store: &mut Store,
    change: &str,
    name: &str,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), desk::DeskError>,
) -> anyhow::Result<()> {
    let codec = store.codec().clone();
    let tx = store.conn_mut().transaction()?;
    f(&tx)?;
    desk::audit(
        &tx,
        &codec,
        &crate::audit::Actor::process(),
        "reviewer_account",
        &serde_json::json!({ "reviewer": name, "change": change }),
    )?;
    tx.commit()?;
    Ok(())
}

pub fn users(config: &Config, cmd: &UsersCmd) -> anyhow::Result<()> {
    let mut store = Store::open_configured(config)?;
    let by = crate::reconcile::review::acting_user();
    match cmd {
        UsersCmd::Add {
            name,
            communities,
            password_stdin,
            url,
            link_hours,
        } => {
            let hash = if *password_stdin {
                Some(accounts::hash_password(&read_password()?)?)
            } else {
                None
            };
            let mut token = None;
            let change = format!("added (communities: {})", shown(communities));
            audited(&mut store, &change, name, |tx| {
                accounts::add(tx, name, communities, &by)?;
                match &hash {
                    Some(h) => accounts::set_password_hash(tx, name, h),
                    None => {
                        token = Some(accounts::issue_link(
                            tx,
                            name,
                            Duration::from_secs(link_hours * 3600),
                        )?);
                        Ok(())
                    }
                }
            })?;
            outln!(
                "reviewer {name} added (communities: {})",
                shown(communities)
            );
            if let Some(t) = token {
                print_link(url, &t, name, *link_hours);
            }
        }
        UsersCmd::List => {
            for r in accounts::list(store.conn())? {
                outln!(
                    "{:<20} {:<9} {:<12} communities: {}",
                    r.name,
                    if r.disabled { "disabled" } else { "active" },
                    if r.has_password {
                        "password"
                    } else {
                        "no password"
                    },
                    shown(&r.communities)
                );
            }
        }
        UsersCmd::Link {
            name,
            url,
            link_hours,
        } => {
            let mut token = String::new();
            audited(&mut store, "sign-in link issued", name, |tx| {
                token = accounts::issue_link(tx, name, Duration::from_secs(link_hours * 3600))?;
                Ok(())
            })?;
            print_link(url, &token, name, *link_hours);
        }
        UsersCmd::Password { name } => {
            let hash = accounts::hash_password(&read_password()?)?;
            audited(&mut store, "password set", name, |tx| {
                accounts::set_password_hash(tx, name, &hash)
            })?;
            outln!("password of {name} set; their sessions ended");
        }
        UsersCmd::Communities { name, communities } => {
            let change = format!("communities set to {}", shown(communities));
            audited(&mut store, &change, name, |tx| {
                accounts::set_communities(tx, name, communities)
            })?;
            outln!("{name} may now see {}", shown(communities));
        }
        UsersCmd::Disable { name } => {
            audited(&mut store, "disabled", name, |tx| {
                accounts::disable(tx, name)
            })?;
            outln!("{name} disabled; their sessions ended");
        }
    }
    Ok(())
}

fn shown(communities: &[String]) -> String {
    if communities.is_empty() {
        "all".into()
    } else {
        communities.join(", ")
    }
}
