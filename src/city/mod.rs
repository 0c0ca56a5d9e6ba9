//! The city harness (`community-sync city`, `tests/city_jetstream.rs`): N district agents —
//! each the real binary in a process of its own, with its own store, config and simulated
//! district (`sim::district`: its own residents, some of them moved from or to the next
//! district) — publish into one JetStream stream; then a consumer reads the stream the way the
//! platform would and checks it against every agent's store (`city::consumer::verify`).
//!
//! The run, in phases:
//! 1. every agent syncs its district without pushing (its outbox fills);
//! 2. every agent pushes at once (timed: the capacity figures); with `chaos`, one agent is
//!    SIGKILLed once part of its events reached the stream, and restarted, and the NATS server
//!    is killed and started again while the others publish (`city::broker`);
//! 3. the districts change (movers get a new phone where they moved to, others change too,
//!    new residents), every agent syncs and pushes again; with `chaos` another agent is
//!    SIGKILLed as its first event of the round arrives;
//! 4. any agent whose push failed (the broker was down) pushes again until its outbox is
//!    empty; the stream is read and checked.

pub mod broker;
pub mod consumer;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;

use crate::sim::district::DistrictOptions;
use crate::sim::{Mutation, Sim, SimOptions};
pub use consumer::{StreamTarget, Verified};

/// `community-sync city`: the harness at a size of one's choosing, printing the figures.
#[derive(Debug, Clone, clap::Args)]
pub struct CityArgs {
    /// District agents (separate processes); up to 100 (Jiangxi's counties).
    #[arg(long, default_value_t = 8)]
    pub districts: usize,
    /// Residents per district (~5.85 source records each).
    #[arg(long, default_value_t = 2000)]
    pub residents: usize,
    /// Share of a district's residents who moved to the next district.
    #[arg(long, default_value_t = 0.03)]
    pub movers: f64,
    /// Seed of the simulated city (the same seed, the same residents and movers).
    #[arg(long, default_value_t = 38)]
    pub seed: u64,
    /// The NATS server (a stream of this run's own is created on it and deleted after).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// SIGKILL agents mid-publish and restart this machine's NATS server mid-run.
    #[arg(long)]
    pub chaos: bool,
    /// Events per batch in the agents' configs.
    #[arg(long, default_value_t = 2000)]
    pub batch_size: usize,
    /// Working directory (recreated).
    #[arg(long, default_value = "community-sync-city")]
    pub dir: PathBuf,
    /// Print the report as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// Runs the harness with this binary as the agents and prints what it measured and checked.
pub async fn run_cli(args: &CityArgs) -> anyhow::Result<CityReport> {
    let binary = std::env::current_exe().context("cannot find this program's own path")?;
    let report = run(&CityOptions {
        districts: args.districts,
        residents: args.residents,
        movers: args.movers,
        seed: args.seed,
        nats_url: args.nats.clone(),
        binary,
        dir: args.dir.clone(),
        chaos: args.chaos,
        batch_size: args.batch_size,
        stream: None,
    })
    .await?;
    let v = &report.verified;
    let mut rates = report.agent_events_per_sec.clone();
    rates.sort_by(f64::total_cmp);
    println!(
        "city: {} districts x {} residents: {} events published by all agents at once in {:.2} s = {:.0} events/s into one stream",
        report.districts, report.residents_per_district, report.push_events, report.push_secs, report.push_events_per_sec
    );
    if let (Some(lo), Some(hi)) = (rates.first(), rates.last()) {
        println!("      per agent (its events / its push's duration): {lo:.0} … {hi:.0} events/s, median {:.0}", rates[rates.len() / 2]);
    }
    println!(
        "      checked: {} messages, each once, per-key order kept, each district's stream = its store's sent events; {} residents joined across districts by ID number; {} keys with several versions",
        v.messages, v.joined_residents, v.keys_with_versions
    );
    if args.chaos {
        println!(
            "      chaos: {} agents SIGKILLed, {} broker restart(s) ({:.1} s down), {} extra pushes",
            report.agents_killed, report.broker_restarts, report.broker_down_secs, report.push_retries
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report)
}

#[derive(Debug, Clone)]
pub struct CityOptions {
    pub districts: usize,
    /// Residents per district.
    pub residents: usize,
    /// Share of a district's residents who moved to the next district.
    pub movers: f64,
    pub seed: u64,
    pub nats_url: String,
    /// The agents' binary (`community-sync`).
    pub binary: PathBuf,
    /// Working directory (configs and stores), recreated.
    pub dir: PathBuf,
    /// Kill agents and restart the NATS server mid-run.
    pub chaos: bool,
    /// Events per batch in the agents' configs.
    pub batch_size: usize,
    /// Stream and subject prefix; unique per run when None.
    pub stream: Option<StreamTarget>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CityReport {
    pub districts: usize,
    pub residents_per_district: usize,
    /// Events published in phase 2 (all agents at once) and how long it took.
    pub push_events: u64,
    pub push_secs: f64,
    pub push_events_per_sec: f64,
    /// Each agent's events/s in phase 2 (its events over its own push's duration).
    pub agent_events_per_sec: Vec<f64>,
    pub agents_killed: usize,
    pub broker_restarts: usize,
    pub broker_down_secs: f64,
    pub push_retries: usize,
    pub verified: Verified,
}

/// One district agent: its district, config and store.
struct Agent {
    district: String,
    config: PathBuf,
    store: PathBuf,
    sim: Sim,
}

/// The agent config's `[platform]`: the example config's HTTP platform replaced by the stream.
pub fn with_jetstream_platform(
    config: &str,
    t: &StreamTarget,
    district: &str,
    batch_size: usize,
) -> String {
    let lines: Vec<&str> = config.lines().collect();
    let start = lines.iter().position(|l| l.trim() == "[platform]");
    let Some(start) = start else {
        return config.to_string();
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with('[') && !l.starts_with("[platform."))
        .map_or(lines.len(), |i| start + 1 + i);
    let section = format!(
        "[platform]\nkind = \"jetstream\"\nurl = \"{}\"\nbatch_size = {batch_size}\nschedule = \"* * * * *\"\n\
         [platform.jetstream]\nstream = \"{}\"\ndistrict = \"{district}\"\nsubject_prefix = \"{}\"\n\
         ack_timeout_secs = 2.0\nretries = 4\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n\
         duplicate_window_secs = 3600\n",
        t.url, t.stream, t.subject_prefix
    );
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    out.push(section);
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

async fn start_agents(o: &CityOptions, t: &StreamTarget) -> anyhow::Result<Vec<Agent>> {
    let codes = crate::sim::district::city_districts(o.districts);
    anyhow::ensure!(
        codes.len() == o.districts,
        "at most {} districts",
        codes.len()
    );
    let movers = ((o.residents as f64) * o.movers).round() as usize;
    let mut agents = Vec::new();
    for (k, code) in codes.iter().enumerate() {
        let n = codes.len();
        let district = DistrictOptions {
            code: *code,
            moves_to: (n > 1).then(|| codes[(k + 1) % n]),
            moved_in_from: (n > 1).then(|| codes[(k + n - 1) % n]),
            movers,
            city_seed: o.seed,
        };
        let sim = Sim::start(SimOptions {
            seed: o.seed.wrapping_add(k as u64 + 1),
            residents: o.residents,
            district: Some(district),
            ..SimOptions::default()
        })
        .await
        .with_context(|| format!("cannot start the simulator of district {code}"))?;
        let dir = o.dir.join(code.to_string());
        std::fs::create_dir_all(&dir)?;
        let store = dir.join("store.db");
        let config = crate::cli::demo::write_sim_config(&sim, &dir, &store)?;
        // No settle delay: phase 3's changes, made a moment before, are fetched at once.
        let text: String = std::fs::read_to_string(&config)?
            .lines()
            .filter(|l| !l.starts_with("settle_secs"))
            .map(|l| match l {
                "[sources.streams.incremental]" => format!("{l}\nsettle_secs = 0\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        let text = with_jetstream_platform(&text, t, &code.to_string(), o.batch_size);
        std::fs::write(&config, text)?;
        agents.push(Agent {
            district: code.to_string(),
            config,
            store,
            sim,
        });
    }
    Ok(agents)
}

/// An agent's command line; its log (stderr) goes to `{dir}/{district}.log`.
fn agent_command(
    o: &CityOptions,
    a: &Agent,
    args: &[&str],
) -> anyhow::Result<tokio::process::Command> {
    let log = o.dir.join(format!("{}.log", a.district));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut c = tokio::process::Command::new(&o.binary);
    c.arg("--config")
        .arg(&a.config)
        .args(["--log-level", "warn", "--log-format", "text"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    c.kill_on_drop(true);
    Ok(c)
}

/// Runs one agent command to its end (bounded): its exit status.
async fn run_agent(
    o: &CityOptions,
    a: &Agent,
    args: &[&str],
) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = agent_command(o, a, args)?
        .spawn()
        .context("cannot start an agent")?;
    match tokio::time::timeout(Duration::from_secs(300), child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            let _ = child.kill().await;
            anyhow::bail!("agent {} `{}` ran over 300 s", a.district, args.join(" "))
        }
    }
}

/// Pending outbox events of an agent's store.
fn pending(a: &Agent) -> anyhow::Result<usize> {
    Ok(consumer::books(&a.store, &a.district)?.pending)
}

/// Pushes again (bounded) until the agent's outbox is empty.
async fn push_until_empty(o: &CityOptions, a: &Agent) -> anyhow::Result<usize> {
    let mut tries = 0;
    while pending(a)? > 0 {
        anyhow::ensure!(
            tries < 20,
            "agent {}: the outbox did not empty after 20 pushes",
            a.district
        );
        run_agent(o, a, &["push"]).await?;
        tries += 1;
    }
    Ok(tries)
}

/// Waits (bounded) until `n` messages were published on `subject` (a core subscription sees
/// every publish the stream stores).
async fn wait_for_messages(sub: &mut async_nats::Subscriber, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.next()).await {
            Ok(Some(_)) => seen += 1,
            _ => return false,
        }
    }
    true
}

/// A name for this run's stream and subjects: letters only (no digit run for the log
/// scrubber to take for a phone number), from the process id and the clock.
pub fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 40);
    let mut out = String::new();
    while x > 0 {
        out.push((b'a' + (x % 26) as u8) as char);
        x /= 26;
    }
    out
}

pub async fn run(o: &CityOptions) -> anyhow::Result<CityReport> {
    if o.dir.exists() {
        std::fs::remove_dir_all(&o.dir)
            .with_context(|| format!("cannot clear {}", o.dir.display()))?;
    }
    std::fs::create_dir_all(&o.dir)?;
    let unique = format!(
        "{}n{}",
        std::process::id(),
        crate::store::now_text().replace(|c: char| !c.is_ascii_digit(), "")
    );
    let target = o.stream.clone().unwrap_or_else(|| StreamTarget {
        url: o.nats_url.clone(),
        stream: format!("CITY_{}", unique.to_uppercase()),
        subject_prefix: format!("city{unique}"),
    });
    let (client, js) = consumer::connect(&target.url).await?;
    consumer::create_stream(&js, &target, Duration::from_secs(3600)).await?;
    let result = run_in(o, &target, &client, &js).await;
    // The stream is this run's alone: removed whatever happened (the broker may have been
    // restarted; the client reconnects).
    if let Err(e) = js.delete_stream(&target.stream).await {
        tracing::warn!(stream = %target.stream, "cannot delete the city's stream: {e}");
    }
    result
}

async fn run_in(
    o: &CityOptions,
    t: &StreamTarget,
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<CityReport> {
    let agents = start_agents(o, t).await?;
    let mut report = CityReport {
        districts: agents.len(),
        residents_per_district: o.residents,
        ..CityReport::default()
    };
    // Phase 1: every district's sync, no push.
    let syncs = agents
        .iter()
        .map(|a| run_agent(o, a, &["sync", "--no-push"]));
    for (a, status) in agents.iter().zip(futures::future::join_all(syncs).await) {
        anyhow::ensure!(
            status?.success(),
            "agent {}: the first sync failed (see {}.log)",
            a.district,
            a.district
        );
    }
    let expected: Vec<usize> = agents.iter().map(pending).collect::<anyhow::Result<_>>()?;
    report.push_events = expected.iter().sum::<usize>() as u64;
    // Phase 2: every agent publishes at once.
    let started = Instant::now();
    let broker = if o.chaos {
        let addr = broker_addr(&t.url)?;
        Some(broker::Broker::find(addr)?)
    } else {
        None
    };
    let (per_agent, chaos) = publish_all(o, t, client, &agents, &expected, broker).await?;
    report.push_secs = started.elapsed().as_secs_f64();
    report.push_events_per_sec = report.push_events as f64 / report.push_secs.max(1e-9);
    report.agent_events_per_sec = per_agent;
    report.agents_killed += chaos.killed;
    report.broker_restarts += chaos.restarts;
    report.broker_down_secs = chaos.down_secs;
    for a in &agents {
        report.push_retries += push_until_empty(o, a).await?;
    }
    // Phase 3: the districts change; every agent syncs and pushes again.
    change_districts(&agents)?;
    report.agents_killed += second_round(o, t, client, &agents).await?;
    for a in &agents {
        report.push_retries += push_until_empty(o, a).await?;
    }
    // Phase 4: the platform's check.
    let published = consumer::read_all(js, t).await?;
    let books = agents
        .iter()
        .map(|a| consumer::books(&a.store, &a.district))
        .collect::<anyhow::Result<Vec<_>>>()?;
    report.verified = consumer::verify(&t.subject_prefix, &published, &books).map_err(|p| {
        anyhow::anyhow!(
            "the stream does not match the agents' stores:\n  {}",
            p.join("\n  ")
        )
    })?;
    for a in agents {
        a.sim.shutdown().await;
    }
    Ok(report)
}

fn broker_addr(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let u = url::Url::parse(url)?;
    let host = u.host_str().unwrap_or("127.0.0.1");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", u.port().unwrap_or(4222))
        .parse()
        .with_context(|| format!("{url}: the harness restarts a NATS server on this machine only"))
}

#[derive(Default)]
struct Chaos {
    killed: usize,
    restarts: usize,
    down_secs: f64,
}

/// Phase 2: all agents push at once. With a broker: agent 0 is SIGKILLed once a quarter of its
/// events reached the stream (it must then still have events pending: killed mid-publish) and
/// pushes again; the broker is restarted once the stream holds ~40 % of all events.
async fn publish_all(
    o: &CityOptions,
    t: &StreamTarget,
    client: &async_nats::Client,
    agents: &[Agent],
    expected: &[usize],
    mut broker: Option<broker::Broker>,
) -> anyhow::Result<(Vec<f64>, Chaos)> {
    let mut chaos = Chaos::default();
    let mut victim_sub = client
        .subscribe(format!("{}.{}.>", t.subject_prefix, agents[0].district))
        .await?;
    let mut all_sub = client.subscribe(format!("{}.>", t.subject_prefix)).await?;
    client.flush().await?;
    let others = futures::future::join_all(
        agents
            .iter()
            .zip(expected)
            .skip(1)
            .map(|(a, n)| timed_push(o, a, *n)),
    );
    let kill = broker.is_some();
    let victim = async {
        if !kill {
            return timed_push(o, &agents[0], expected[0]).await;
        }
        let t0 = Instant::now();
        let mut child = agent_command(o, &agents[0], &["push"])?.spawn()?;
        let reached = wait_for_messages(&mut victim_sub, (expected[0] / 4).max(1)).await;
        child.start_kill()?;
        child.wait().await?;
        anyhow::ensure!(
            reached,
            "agent {}: none of its events reached the stream",
            agents[0].district
        );
        let left = pending(&agents[0])?;
        anyhow::ensure!(
            left > 0,
            "agent {} finished before it could be killed mid-publish; use a bigger district",
            agents[0].district
        );
        chaos.killed += 1;
        run_agent(o, &agents[0], &["push"]).await?;
        Ok(expected[0] as f64 / t0.elapsed().as_secs_f64().max(1e-9))
    };
    let restart = async {
        let Some(b) = broker.as_mut() else {
            return Ok::<_, anyhow::Error>((0, 0.0));
        };
        let total: usize = expected.iter().sum();
        if !wait_for_messages(&mut all_sub, total * 2 / 5).await {
            anyhow::bail!("the stream never reached 40 % of the city's events");
        }
        let down = tokio::task::block_in_place(|| b.restart())?;
        Ok((1, down.as_secs_f64()))
    };
    let (others, victim, restart) = tokio::join!(others, victim, restart);
    let (restarts, down) = restart?;
    chaos.restarts = restarts;
    chaos.down_secs = down;
    let mut rates = vec![victim?];
    for r in others {
        rates.push(r?);
    }
    Ok((rates, chaos))
}

/// One agent's push, timed: its events per second.
async fn timed_push(o: &CityOptions, a: &Agent, events: usize) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let status = run_agent(o, a, &["push"]).await?;
    // Under chaos a push may fail while the broker is down: it is pushed again afterwards.
    anyhow::ensure!(
        o.chaos || status.success(),
        "agent {}: push failed (see {}.log)",
        a.district,
        a.district
    );
    Ok(events as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}

/// Phase 3's changes: in every district, each mover who arrived gets a new phone there (their
/// first district still has the old one), a few other residents change phone or name, and one
/// new resident appears.
fn change_districts(agents: &[Agent]) -> anyhow::Result<()> {
    let at = chrono::Utc::now().fixed_offset() - chrono::Duration::seconds(1);
    for a in agents {
        let code: u32 = a.district.parse()?;
        let arrived: Vec<usize> = a
            .sim
            .movers()
            .into_iter()
            .filter(|m| m.to == code)
            .map(|m| m.resident)
            .collect();
        let others: Vec<usize> = a
            .sim
            .residents_in("health")
            .into_iter()
            .step_by(11)
            .take(8)
            .collect();
        for (i, resident) in arrived.into_iter().chain(others).enumerate() {
            for source in crate::sim::SOURCES {
                let m = if i % 3 == 2 {
                    Mutation::ChangeName {
                        source: source.into(),
                        resident,
                    }
                } else {
                    Mutation::ChangePhone {
                        source: source.into(),
                        resident,
                    }
                };
                let _ = a.sim.mutate_at(m, at); // residents absent from a system: nothing to change
            }
        }
        a.sim
            .mutate_at(
                Mutation::AddResident {
                    systems: vec!["onecard".into(), "health".into()],
                },
                at,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Phase 3's round: every agent syncs and pushes; with chaos, the last agent is SIGKILLed as
/// its first event of the round reaches the stream, and syncs again.
async fn second_round(
    o: &CityOptions,
    t: &StreamTarget,
    client: &async_nats::Client,
    agents: &[Agent],
) -> anyhow::Result<usize> {
    let n = agents.len();
    let victim = &agents[n - 1];
    let mut sub = client
        .subscribe(format!("{}.{}.>", t.subject_prefix, victim.district))
        .await?;
    client.flush().await?;
    let rest =
        futures::future::join_all(agents[..n - 1].iter().map(|a| run_agent(o, a, &["sync"])));
    let last = async {
        if !o.chaos {
            run_agent(o, victim, &["sync"]).await?;
            return Ok::<usize, anyhow::Error>(0);
        }
        let mut child = agent_command(o, victim, &["sync"])?.spawn()?;
        let killed = tokio::select! {
            _ = wait_for_messages(&mut sub, 1) => { child.start_kill()?; child.wait().await?; 1 }
            status = child.wait() => { status?; 0 }
        };
        run_agent(o, victim, &["sync"]).await?;
        Ok(killed)
    };
    let (rest, killed) = tokio::join!(rest, last);
    for s in rest {
        s?;
    }
    killed
}
