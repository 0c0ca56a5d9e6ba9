//! A city on one machine (`community_sync::city`): eight district agents — the real binary, a
//! process, store and simulated district each, some residents moved between neighbouring
//! districts — publish into one JetStream stream on the machine's NATS server. One agent is
//! SIGKILLed mid-publish and restarted, the NATS server itself is killed and started again
//! while the others publish, and another agent is killed in a later sync. Then the stream,
//! read as the platform reads it, must hold every event each store marked sent exactly once,
//! each key's versions in order, nothing pending anywhere; movers are joined by ID number.
//!
//! The harness restarts the machine's shared NATS server: `city::broker::Broker` starts it
//! again when dropped if it is not answering, and the stream and subjects are this run's own.

mod services;

use community_sync::city::{self, CityOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_district_agents_publish_exactly_once_through_kills_and_a_broker_restart() {
    let Some(addr) = services::require(&services::NATS, "city_jetstream") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = city::run(&CityOptions {
        districts: 8,
        residents: 120,
        movers: 0.05,
        seed: 38,
        nats_url: format!("nats://{addr}"),
        binary: env!("CARGO_BIN_EXE_community-sync").into(),
        dir: dir.path().join("city"),
        chaos: true,
        batch_size: 50,
        stream: None,
    })
    .await
    .unwrap_or_else(|e| panic!("the city run failed: {e:#}"));
    assert!(
        services::reachable(&services::NATS),
        "the NATS server is running again"
    );
    let v = &report.verified;
    assert_eq!(v.per_district.len(), 8);
    assert!(
        v.per_district.values().all(|n| *n > 200),
        "{:?}",
        v.per_district
    );
    assert_eq!(report.broker_restarts, 1);
    assert_eq!(
        report.agents_killed, 2,
        "one mid-publish, one in the second round"
    );
    // Movers: six per move, eight moves (a ring); those present in a system on both sides are
    // joined by ID number. Versions: the second round changed phones and names.
    assert!(
        (8..=48).contains(&v.joined_residents),
        "{} joined",
        v.joined_residents
    );
    assert!(
        v.keys_with_versions > 50,
        "{} keys with several versions",
        v.keys_with_versions
    );
}
