//! The JetStream sink: a district agent's outbox published into the city's NATS JetStream
//! stream, one message per event, instead of POSTed to the HTTP platform. Only the delivery
//! is here; batching, coalescing, acknowledgements, dead letters and the audit chain are
//! `push`'s, as for HTTP ([`super::drain_batches`]).
//!
//! - Subject `{subject_prefix}.{district}.{entity}`; header `Nats-Msg-Id: {district}:{event_id}`
//!   (event ids are per store, so two districts' `person:P00000042:3` differ by the district),
//!   `Nats-Expected-Stream: {stream}` (a subject bound to another stream by mistake is refused,
//!   not stored there), `CS-District` and `CS-Batch` (the batch key, as in the audit chain).
//! - An event counts as sent only on its publish acknowledgement. A re-published event (a
//!   batch whose acknowledgements were lost, a crash before they were stored) is dropped by
//!   the stream as a duplicate within its duplicate window: exactly-once effect, as the HTTP
//!   `Idempotency-Key` gives.
//! - Pipelining: every event of a batch is published without waiting, up to `max_in_flight`
//!   unacknowledged at once; batches go one at a time, and a batch holds one version per key,
//!   so two events of one key are never in flight together (per-key order).
//! - Events that got no acknowledgement (timeout, a broker restart, a broken connection) are
//!   published again, alone, with backoff, up to `retries`; then the batch stays pending with
//!   its key and the next push publishes it again. An event the stream refuses for good (over
//!   its maximum message size, or over the server's maximum payload) is a dead letter.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

use super::{Batch, BatchResponse, Delivery, EventResult, PushError, Shape};
use crate::config::{Config, JetStreamConfig};

/// The JetStream API's code for a message over the stream's `max_msg_size`.
const MESSAGE_TOO_LARGE: u64 = 10054;
/// Headers and subject on top of the payload, for the server's `max_payload` check.
const HEADER_ALLOWANCE: usize = 512;

pub struct JetStreamSink {
    client: async_nats::Client,
    js: jetstream::Context,
    config: JetStreamConfig,
    /// `{subject_prefix}.{district}`.
    subject_base: String,
    /// `nats://host:port stream NAME`: the audit chain's destination.
    destination: String,
}

/// How one publish ended.
enum Outcome {
    Stored {
        duplicate: bool,
    },
    /// Refused for good: a dead letter.
    Refused {
        code: i64,
        reason: String,
    },
    /// No acknowledgement (yet): publish again.
    Retry(String),
    /// A setup problem no retry mends (no stream on the subject, another stream took it).
    Fatal(String),
}

impl JetStreamSink {
    /// Connects to the configured servers (auth, TLS) and checks the stream: it is created
    /// when missing and `create_stream` is set; a duplicate window shorter than the configured
    /// one is warned about (the server may deny us stream info: then nothing is checked here,
    /// `check --connect` says more).
    pub async fn connect(config: &Config) -> Result<JetStreamSink, PushError> {
        let sink = Self::connect_only(config).await?;
        match sink.ensure_stream().await {
            Ok(info) => {
                if let Some(w) = short_window(&info, &sink.config) {
                    tracing::warn!(stream = %sink.config.stream, "{w}");
                }
            }
            Err(StreamCheck::Fatal(m)) => return Err(PushError::Setup(m)),
            Err(StreamCheck::Unknown(m)) => {
                tracing::debug!(stream = %sink.config.stream, "stream not checked: {m}")
            }
        }
        Ok(sink)
    }

    async fn connect_only(config: &Config) -> Result<JetStreamSink, PushError> {
        let p = &config.platform;
        let js_config = p.jetstream.clone().ok_or_else(|| {
            PushError::Setup("platform.kind = \"jetstream\" needs [platform.jetstream]".into())
        })?;
        let dir = config.path.parent().unwrap_or(std::path::Path::new("."));
        let path_of = |key: &str, file: &str| {
            crate::source::secret::expand_path(file, dir)
                .map_err(|e| PushError::Setup(format!("platform.{key}: {}", e.0)))
        };
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("community-sync district {}", js_config.district))
            .connection_timeout(Duration::from_secs(10))
            .max_reconnects(None);
        if let Some(file) = &js_config.credentials_file {
            let path = path_of("jetstream.credentials_file", file)?;
            if let Err(m) = crate::crypto::check_file_mode(&path, crate::crypto::FileKind::Secret) {
                return Err(PushError::Setup(format!(
                    "platform.jetstream.credentials_file {} is {} (mode {:04o}); run `chmod 600` on it",
                    path.display(),
                    m.why,
                    m.mode
                )));
            }
            opts = opts.credentials_file(&path).await.map_err(|e| {
                PushError::Setup(format!(
                    "platform.jetstream.credentials_file {}: {e}",
                    path.display()
                ))
            })?;
        }
        if let Some(seed) = &js_config.nkey_seed {
            let seed = crate::source::secret::resolve(seed, dir)
                .map_err(|e| PushError::Setup(format!("platform.jetstream.nkey_seed: {}", e.0)))?;
            opts = opts.nkey(seed.expose().to_string());
        }
        let urls: Vec<&String> = std::iter::once(&p.url).chain(&js_config.servers).collect();
        if js_config.tls || urls.iter().any(|u| u.starts_with("tls://")) {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &js_config.ca_file {
            opts = opts.add_root_certificates(path_of("jetstream.ca_file", ca)?);
        }
        match (&p.client_cert, &p.client_key) {
            (Some(cert), Some(key)) => {
                let key = path_of("client_key", key)?;
                if let Err(m) =
                    crate::crypto::check_file_mode(&key, crate::crypto::FileKind::Secret)
                {
                    return Err(PushError::Setup(format!(
                        "platform.client_key {} is {} (mode {:04o}); run `chmod 600` on it",
                        key.display(),
                        m.why,
                        m.mode
                    )));
                }
                opts = opts.add_client_certificate(path_of("client_cert", cert)?, key);
            }
            (None, None) => {}
            _ => {
                return Err(PushError::Setup(
                    "platform.client_cert and platform.client_key go together".into(),
                ))
            }
        }
        let addrs = urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PushError::Setup(format!("platform.url: {e}")))?;
        let shown = urls
            .iter()
            .map(|u| u.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let client = opts.connect(addrs).await.map_err(|e| {
            PushError::Setup(format!(
                "cannot connect to NATS at {shown}: {e}; check platform.url, that the server runs, and platform.jetstream's credentials and TLS settings. Events stay in the outbox"
            ))
        })?;
        let ack_timeout = Duration::from_secs_f64(js_config.ack_timeout_secs);
        let js = jetstream::ContextBuilder::new()
            .timeout(ack_timeout)
            .ack_timeout(ack_timeout)
            .max_ack_inflight(js_config.max_in_flight.saturating_mul(2).max(16))
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok(JetStreamSink {
            client,
            js,
            subject_base: format!("{}.{}", js_config.subject_prefix, js_config.district),
            destination: format!("{} stream {}", p.url, js_config.stream),
            config: js_config,
        })
    }

    /// Publishes pending events until the outbox is empty, or `max_batches` were sent (see
    /// [`super::drain_batches`]: the same books as the HTTP push).
    pub async fn drain(
        &self,
        platform: &crate::config::PlatformConfig,
        store: &std::sync::Arc<std::sync::Mutex<crate::store::Store>>,
        max_batches: Option<u64>,
    ) -> Result<super::PushStats, PushError> {
        super::drain_batches(self, platform, store, max_batches).await
    }

    /// The subject an event is published on.
    fn subject_of(&self, event_id: &str) -> String {
        let entity = event_id.split(':').next().unwrap_or("unknown");
        format!("{}.{entity}", self.subject_base)
    }

    /// Flushes what is still buffered (bounded: the server may be gone); every event that
    /// counts was acknowledged already. The connection closes when the sink is dropped.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
    }

    /// Publishes one batch's events (those in `todo`), `max_in_flight` at a time, and returns
    /// each one's outcome.
    async fn publish_all(
        &self,
        batch: &Batch,
        body: &Bytes,
        todo: &[usize],
    ) -> Vec<(usize, Outcome)> {
        let window = self.config.max_in_flight.max(1);
        let max_payload = self.client.server_info().max_payload;
        let mut outcomes = Vec::with_capacity(todo.len());
        let mut in_flight = FuturesUnordered::new();
        for &i in todo {
            while in_flight.len() >= window {
                if let Some(done) = in_flight.next().await {
                    outcomes.push(done);
                }
            }
            let (Some(span), Some((_, event_id))) = (batch.spans.get(i), batch.rows.get(i)) else {
                // Never skipped silently: a skipped event would count as acknowledged.
                let m = format!("batch {} has no event {i} to publish", batch.key);
                outcomes.push((i, Outcome::Fatal(m)));
                continue;
            };
            if max_payload > 0 && span.len() + HEADER_ALLOWANCE > max_payload {
                outcomes.push((
                    i,
                    Outcome::Refused {
                        code: 413,
                        reason: format!(
                            "event of {} bytes is over the NATS server's max_payload ({max_payload} bytes)",
                            span.len()
                        ),
                    },
                ));
                continue;
            }
            let message = PublishMessage::build()
                .payload(body.slice(span.clone()))
                .message_id(format!("{}:{event_id}", self.config.district))
                .expected_stream(&self.config.stream)
                .header("CS-District", self.config.district.as_str())
                .header("CS-Batch", batch.key.as_str());
            match self
                .js
                .send_publish(self.subject_of(event_id), message)
                .await
            {
                Ok(ack) => in_flight.push(async move { (i, classify(ack.await)) }),
                Err(e) => outcomes.push((i, classify(Err(e)))),
            }
        }
        while let Some(done) = in_flight.next().await {
            outcomes.push(done);
        }
        outcomes
    }

    /// Looks the stream up, creating it when missing and `create_stream` is set.
    async fn ensure_stream(&self) -> Result<jetstream::stream::Info, StreamCheck> {
        let name = &self.config.stream;
        match self.js.get_stream(name).await {
            Ok(mut stream) => stream
                .info()
                .await
                .cloned()
                .map_err(|e| StreamCheck::Unknown(e.to_string())),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(api)
                        if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                if !self.config.create_stream {
                    return Err(StreamCheck::Fatal(format!(
                        "JetStream stream {name} does not exist at {}: create it (docs/platform-api.md, \"JetStream\") or set platform.jetstream.create_stream = true",
                        self.destination
                    )));
                }
                let created = self
                    .js
                    .create_stream(stream_config(&self.config))
                    .await
                    .map_err(|e| {
                        StreamCheck::Fatal(format!("cannot create JetStream stream {name}: {e}"))
                    })?;
                tracing::info!(stream = %name, subjects = %format!("{}.>", self.config.subject_prefix), "created the JetStream stream");
                Ok(created.cached_info().clone())
            }
            Err(e) => Err(StreamCheck::Unknown(e.to_string())),
        }
    }

    /// `check --connect`: the stream exists (or is created as configured), listens on our
    /// subjects with a long enough duplicate window, and takes a publish from us. The publish
    /// asks for an impossible last sequence, so the stream answers "wrong last sequence" and
    /// stores nothing: that answer comes only from the stream that would store our events.
    pub async fn probe(config: &Config) -> Result<String, PushError> {
        let sink = Self::connect_only(config).await?;
        let info = match sink.ensure_stream().await {
            Ok(info) => info,
            Err(StreamCheck::Fatal(m)) => return Err(PushError::Setup(m)),
            Err(StreamCheck::Unknown(m)) => {
                return Err(PushError::Setup(format!(
                    "cannot read JetStream stream {} at {}: {m}",
                    sink.config.stream, sink.destination
                )))
            }
        };
        let subject = sink.subject_of("person:probe:0");
        if !info
            .config
            .subjects
            .iter()
            .any(|f| subject_matches(f, &subject))
        {
            return Err(PushError::Setup(format!(
                "JetStream stream {} listens on {:?}, not on {}.>: add the subject to the stream, or fix platform.jetstream.subject_prefix / district",
                sink.config.stream, info.config.subjects, sink.subject_base
            )));
        }
        if let Some(w) = short_window(&info, &sink.config) {
            return Err(PushError::Setup(w));
        }
        let message = PublishMessage::build()
            .payload(Bytes::from_static(b"{}"))
            .expected_stream(&sink.config.stream)
            .expected_last_sequence(u64::MAX);
        let answer = match sink.js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        sink.close().await;
        match answer {
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(format!(
                "stream {} ({} messages, duplicate window {}s, {} replica(s), {:?} retention) takes publishes on {subject}",
                sink.config.stream,
                info.state.messages,
                info.config.duplicate_window.as_secs(),
                info.config.num_replicas,
                info.config.retention,
            )),
            Err(e) => Err(PushError::Setup(format!(
                "a publish to {subject} was not taken by stream {}: {}",
                sink.config.stream,
                describe(&e)
            ))),
            Ok(ack) => Err(PushError::Setup(format!(
                "stream {} stored the probe (sequence {}) although it asked for an impossible last sequence; is this a JetStream server?",
                ack.stream, ack.sequence
            ))),
        }
    }
}

enum StreamCheck {
    /// The stream is missing (and not to be created) or could not be created.
    Fatal(String),
    /// Stream info could not be read (permissions, timeout): not judged.
    Unknown(String),
}

/// The stream a sink creates: `{prefix}.>` for every district, file storage.
fn stream_config(c: &JetStreamConfig) -> jetstream::stream::Config {
    use jetstream::stream::{RetentionPolicy, StorageType};
    jetstream::stream::Config {
        name: c.stream.clone(),
        subjects: vec![format!("{}.>", c.subject_prefix)],
        retention: match c.retention.as_str() {
            "interest" => RetentionPolicy::Interest,
            "workqueue" => RetentionPolicy::WorkQueue,
            _ => RetentionPolicy::Limits,
        },
        storage: StorageType::File,
        num_replicas: c.replicas,
        duplicate_window: Duration::from_secs(c.duplicate_window_secs),
        max_age: Duration::from_secs(c.max_age_days * 86_400),
        ..Default::default()
    }
}

/// The warning for a stream whose duplicate window is shorter than the configured one.
fn short_window(info: &jetstream::stream::Info, c: &JetStreamConfig) -> Option<String> {
    let have = info.config.duplicate_window.as_secs();
    (have < c.duplicate_window_secs).then(|| {
        format!(
            "JetStream stream {} drops duplicates within {have}s only, platform.jetstream.duplicate_window_secs asks for {}s: a batch re-published after a longer outage would be stored twice. Raise the stream's duplicate_window (docs/platform-api.md)",
            c.stream, c.duplicate_window_secs
        )
    })
}

/// Whether a NATS subject filter (`*` one token, `>` the rest) covers `subject`.
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The JetStream API error inside a publish error, if the server answered with one.
fn api_error(e: &jetstream::context::PublishError) -> Option<&jetstream::Error> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>())
}

fn describe(e: &jetstream::context::PublishError) -> String {
    match api_error(e) {
        Some(api) => format!("{e}: {api}"),
        None => e.to_string(),
    }
}

fn classify(
    r: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) -> Outcome {
    let e = match r {
        Ok(ack) => {
            return Outcome::Stored {
                duplicate: ack.duplicate,
            }
        }
        Err(e) => e,
    };
    match e.kind() {
        PublishErrorKind::StreamNotFound => Outcome::Fatal(
            "no JetStream stream listens on the subject (the server answered \"no responders\"): create the stream or add the subject to it (docs/platform-api.md)".into(),
        ),
        PublishErrorKind::Other => match api_error(&e) {
            Some(api) if api.error_code().0 == MESSAGE_TOO_LARGE => Outcome::Refused {
                code: 413,
                reason: format!("refused by the stream: {api}"),
            },
            // 10060: "expected stream does not match": another stream took our subject.
            Some(api) if api.error_code().0 == 10060 => Outcome::Fatal(format!(
                "the subject belongs to another JetStream stream than platform.jetstream.stream ({api})"
            )),
            _ => Outcome::Retry(describe(&e)),
        },
        _ => Outcome::Retry(describe(&e)),
    }
}

impl Delivery for JetStreamSink {
    fn destination(&self) -> &str {
        &self.destination
    }

    fn shape(&self) -> Shape {
        Shape::Events
    }

    async fn deliver(&self, batch: &Batch) -> (Result<BatchResponse, PushError>, u64) {
        let body = Bytes::from(batch.body.clone());
        let mut todo: Vec<usize> = (0..batch.rows.len()).collect();
        let mut results = Vec::new();
        let mut duplicates = 0u64;
        let mut attempt: u32 = 0;
        loop {
            let mut again = Vec::new();
            let mut last = String::new();
            for (i, outcome) in self.publish_all(batch, &body, &todo).await {
                match outcome {
                    Outcome::Stored { duplicate } => duplicates += u64::from(duplicate),
                    Outcome::Refused { code, reason } => results.push(EventResult {
                        event_id: batch.rows[i].1.clone(),
                        status: "rejected".into(),
                        code: Some(code),
                        reason: Some(reason),
                    }),
                    Outcome::Retry(m) => {
                        again.push(i);
                        last = m;
                    }
                    Outcome::Fatal(m) => {
                        return (
                            Err(PushError::Platform {
                                path: self.destination.clone(),
                                message: format!("{m}; the events stay in the outbox"),
                            }),
                            attempt as u64,
                        )
                    }
                }
            }
            if again.is_empty() {
                if duplicates > 0 {
                    tracing::info!(key = %batch.key, duplicates, "events published before (their acknowledgement was lost) were dropped by the stream as duplicates");
                }
                return (Ok(BatchResponse { results }), attempt as u64);
            }
            if attempt >= self.config.retries {
                return (
                    Err(PushError::Platform {
                        path: self.destination.clone(),
                        message: format!(
                            "{} of {} events got no acknowledgement after {} attempt(s) (last: {last}); the batch stays in the outbox and is published again, under the same message ids, by the next push",
                            again.len(),
                            batch.rows.len(),
                            attempt + 1
                        ),
                    }),
                    attempt as u64,
                );
            }
            let delay = super::backoff_delay(
                attempt,
                self.config.backoff_initial_ms,
                self.config.backoff_max_ms,
            );
            tracing::warn!(attempt = attempt + 1, delay_ms = delay.as_millis() as u64, key = %batch.key, unacknowledged = again.len(), "{last}; publishing them again");
            tokio::time::sleep(delay).await;
            todo = again;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subject_filters_match_as_nats_does() {
        assert!(subject_matches("community.>", "community.360102.person"));
        assert!(subject_matches(
            "community.*.person",
            "community.360102.person"
        ));
        assert!(subject_matches(
            "community.360102.person",
            "community.360102.person"
        ));
        assert!(!subject_matches("community.*", "community.360102.person"));
        assert!(!subject_matches(
            "community.360103.>",
            "community.360102.person"
        ));
        assert!(!subject_matches("other.>", "community.360102.person"));
        assert!(!subject_matches(
            "community.360102.person.>",
            "community.360102.person"
        ));
    }
}
