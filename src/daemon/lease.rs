//! Holding store leases from async code: wait until every named lease is free, keep them
//! renewed while the work runs, give them back when the guard drops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::lease::{Acquired, LeaseHolder};
use crate::store::{Store, StoreError};

/// Time to live of a lease; renewed every third of it while held.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

fn poisoned() -> StoreError {
    StoreError::Sql(rusqlite::Error::InvalidQuery)
}

/// Leases held until dropped.
pub struct LeaseGuard {
    store: Arc<Mutex<Store>>,
    names: Vec<String>,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    pub fn holder(&self) -> &str {
        &self.holder
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewer.abort();
        if let Ok(g) = self.store.lock() {
            for n in &self.names {
                if let Err(e) = g.release_lease(n, &self.holder) {
                    tracing::warn!(lease = %n, "cannot release lease (it expires by itself): {e}");
                }
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let g = store.lock().map_err(|_| poisoned())?;
        f(&g)
    })
    .await
    .map_err(|_| poisoned())?
}

/// Waits until all `names` are held by `holder` (taken in sorted order, so two waiters never
/// deadlock), calling `on_wait` once per lease found held by someone else.
pub async fn acquire(
    store: Arc<Mutex<Store>>,
    names: &[String],
    holder: &str,
    mut on_wait: impl FnMut(&str, Option<&LeaseHolder>),
) -> Result<LeaseGuard, StoreError> {
    let mut sorted: Vec<String> = names.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut held: Vec<String> = Vec::new();
    // Partially acquired leases are released if this future is dropped.
    let mut guard = LeaseGuard {
        store: store.clone(),
        names: Vec::new(),
        holder: holder.to_string(),
        renewer: tokio::spawn(async {}),
    };
    for name in &sorted {
        let mut told = false;
        loop {
            let (n, h) = (name.clone(), holder.to_string());
            let who = match blocking(&store, move |s| s.acquire_lease(&n, &h, LEASE_TTL)).await? {
                Acquired::Held(who) => who,
                taken => {
                    if let Acquired::FromDead(dead) = &taken {
                        tracing::warn!(
                            lease = %name, holder_pid = dead.pid,
                            "took over the lease of a process that is no longer running (killed mid-run?)"
                        );
                    }
                    held.push(name.clone());
                    guard.names = held.clone();
                    break;
                }
            };
            if !told {
                on_wait(name, who.as_ref());
                told = true;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let renew_store = store.clone();
    let renew_names = held.clone();
    let renew_holder = holder.to_string();
    guard.renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_TTL / 3).await;
            for n in &renew_names {
                let (n2, h) = (n.clone(), renew_holder.clone());
                match blocking(&renew_store, move |s| s.renew_lease(&n2, &h, LEASE_TTL)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(lease = %n, "lease lost (expired and taken by another holder)")
                    }
                    Err(e) => tracing::warn!(lease = %n, "cannot renew lease: {e}"),
                }
            }
        }
    });
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_until_the_first_drops_its_guard() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Mutex::new(Store::open(&dir.path().join("s.db")).unwrap()));
        let names = vec!["source:b".to_string(), "source:a".to_string()];
        let first = acquire(store.clone(), &names, "one", |_, _| {})
            .await
            .unwrap();
        let waited = Arc::new(Mutex::new(Vec::new()));
        let w = waited.clone();
        let s2 = store.clone();
        let second = tokio::spawn(async move {
            acquire(s2, &["source:a".to_string()], "two", move |n, h| {
                w.lock()
                    .unwrap()
                    .push((n.to_string(), h.map(|h| h.holder.clone())));
            })
            .await
            .map(|g| g.holder().to_string())
        });
        // The second cannot finish while the first holds "source:a".
        while waited.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!second.is_finished());
        assert_eq!(
            waited.lock().unwrap()[0],
            ("source:a".to_string(), Some("one".to_string()))
        );
        drop(first);
        assert_eq!(second.await.unwrap().unwrap(), "two");
    }

    /// A lease as a process `pid` of our PID namespace (and boot) would have left it: unexpired.
    fn leave_lease(store: &Arc<Mutex<Store>>, name: &str, pid: u32) -> String {
        // Our own token with the pid swapped: same PID namespace, same boot.
        let ours = crate::store::lease::holder_token("cli");
        let (_, space_and_rest) = ours.split_once('@').unwrap();
        let holder = format!("{pid}@{space_and_rest}");
        store
            .lock()
            .unwrap()
            .conn()
            .execute(
                "INSERT INTO leases (name, holder, pid, acquired_at, expires_at)
                 VALUES (?1, ?2, ?3, '2026-01-01T00:00:00.000Z', '2999-01-01T00:00:00.000Z')",
                rusqlite::params![name, holder, pid],
            )
            .unwrap();
        holder
    }

    #[tokio::test]
    async fn the_lease_of_a_killed_process_is_taken_over_not_waited_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Mutex::new(Store::open(&dir.path().join("s.db")).unwrap()));
        let mut alive = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut killed = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let alive_holder = leave_lease(&store, "source:alive", alive.id());
        leave_lease(&store, "source:killed", killed.id());
        killed.kill().unwrap();
        killed.wait().unwrap();

        // The killed holder's lease (it would expire in centuries) is ours straight away.
        let guard = tokio::time::timeout(
            Duration::from_secs(20),
            acquire(
                store.clone(),
                &["source:killed".to_string()],
                "me",
                |_, _| {},
            ),
        )
        .await
        .expect("a dead holder's lease is not waited out")
        .unwrap();
        assert_eq!(
            store
                .lock()
                .unwrap()
                .lease_holder("source:killed")
                .unwrap()
                .unwrap()
                .holder,
            "me"
        );
        drop(guard);

        // A live holder's lease is waited for, and the waiter hears who holds it.
        let mut heard = None;
        let waiting = tokio::time::timeout(
            Duration::from_millis(600),
            acquire(
                store.clone(),
                &["source:alive".to_string()],
                "me",
                |_, h| {
                    heard = h.map(|h| h.holder.clone());
                },
            ),
        )
        .await;
        assert!(waiting.is_err(), "a live holder keeps its lease");
        assert_eq!(heard, Some(alive_holder));
        alive.kill().unwrap();
        alive.wait().unwrap();
    }
}
