//! Helpers shared by the integration tests: a simulator plus a store wired to it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use community_sync::cli::demo;
use community_sync::config::Config;
use community_sync::pipeline::{Context, SyncOptions};
use community_sync::sim::{Sim, SimOptions};
use community_sync::store::Store;

pub const SEED: u64 = 7;

pub async fn sim(residents: usize) -> Sim {
    Sim::start(SimOptions {
        seed: SEED,
        residents,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

/// A context on a fresh store in `dir`, configured from the example config for `sim`, with
/// the settle delay set to 0 so that changes made a moment ago are fetched.
pub fn context(sim: &Sim, dir: &Path) -> Context {
    let config_path =
        demo::write_sim_config(sim, dir, &dir.join("store.db")).expect("config written");
    let mut config = Config::load(&config_path).expect("config valid");
    for s in &mut config.sources {
        for t in &mut s.streams {
            if let Some(inc) = t.incremental.as_mut() {
                inc.settle_secs = 0;
            }
        }
    }
    let store = Store::open_configured(&config).expect("store opens");
    Context {
        config: Arc::new(config),
        store: Arc::new(Mutex::new(store)),
    }
}

/// A sync of every source by a test trigger, incremental, pushing or not.
pub fn sync_options(push: bool) -> SyncOptions {
    SyncOptions {
        progress: None,
        sources: vec![],
        full: false,
        trigger: "test".into(),
        push,
        confirm_deletes: false,
        stop: None,
    }
}

pub fn count(ctx: &Context, sql: &str) -> i64 {
    let g = ctx.store.lock().expect("lock");
    g.conn().query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Outbox events sharing an event id (`{entity}:{key}:{version}`): the id is unique by
/// construction, no index enforces it, so the scenarios that bump versions check it.
pub fn duplicate_event_ids(ctx: &Context) -> i64 {
    count(
        ctx,
        "SELECT count(*) FROM (SELECT 1 FROM outbox GROUP BY entity, entity_key, version HAVING count(*) > 1)",
    )
}

/// Row counts of every table that sync, reconcile or push writes.
pub fn table_counts(ctx: &Context) -> Vec<(String, i64)> {
    [
        "source_records",
        "rejects",
        "persons",
        "card_accounts",
        "card_transactions",
        "volunteers",
        "volunteer_services",
        "elders",
        "eldercare_orders",
        "patients",
        "health_followups",
        "outbox",
        "dead_letters",
    ]
    .iter()
    .map(|t| {
        (
            t.to_string(),
            count(ctx, &format!("SELECT count(*) FROM {t}")),
        )
    })
    .collect()
}
