//! `kubecrawl ingest`: Scrapy Cluster's Kafka API, served from CrawlJobs.
//!
//! Consumes `<prefix>.incoming` as a consumer group (every replica shares the work), turns
//! each message into a CrawlJob change, answers on `<prefix>.outbound_firehose`, and only
//! then commits the message's offset.
//!
//! # Requests
//! - A crawl request, as `kubecrawl feed` takes it ([`crate::request`]): creates the CrawlJob
//!   or adds the URL to the seeds of the job with the same crawlid, appid and spiderid.
//!   Answered only when it carries a `uuid`:
//!   `{"action": "crawl", "uuid", "server_time", "appid", "crawlid", "spiderid",
//!   "namespace", "name", "result": "created" | "seed added" | "already seeded"}`.
//! - An action request, `{"action": "info" | "stop" | "expire" | "stats", "appid", "uuid",
//!   "crawlid"?, "spiderid"?, "stats"?}`. `appid` and `uuid` are required; stop and expire
//!   also need a `crawlid` (as in Scrapy Cluster: one request never ends every crawl of an
//!   app). Without a `crawlid`, info reports every crawl of the app (and spider, if given).
//!   Answers ([`crate::actions`]) carry `action` and `uuid`:
//!   - info: the crawl's `phase`, `total_pending`, `in_flight`, `pages`, `items`, `bytes`,
//!     `errors`, `retries`, `steps`, `status_codes`, `seeds`, `expires`, … and Scrapy
//!     Cluster's `domains`, `total_domains`, `distinct_domains`; or, without a crawlid,
//!     `spiderid`, `total_crawlids`, `total_pending`, `total_domains` and `crawlids`
//!     (crawlid → the same);
//!   - stop: `total_purged`, `crawljobs` (the names deleted), `result: "stopped"`;
//!   - expire: `total_expired`, `expires`, `crawljobs`, `result: "expired"`;
//!   - stats (`stats`: `all` (default), `crawler`, `spider` or `queue`), kubecrawl's own
//!     form: `crawler` (the Crawler Stats Dump) and `queue` (the backlog per spider and
//!     domain).
//! - A stats request in Scrapy Cluster's form, without `action`: `{"appid", "uuid",
//!   "stats"?}`, answered in Scrapy Cluster's shapes ([`crate::stats`]).
//!
//! # Errors are answered
//! A message that is not JSON, not an object, or not a valid request, and a request that
//! cannot be carried out (the API server refuses the CrawlJob, no such crawl) is answered
//! with `{"action": <its action, or "crawl">, "uuid": <its uuid>, "server_time", "error":
//! {"field": <the field at fault, or null>, "message": …}}` — never dropped silently.
//! `action` and `uuid` are left out when the message had none (Scrapy Cluster's REST service
//! takes every message with a `uuid` key for an answer). The uuid of a message that is not
//! even JSON is looked for in its text.
//!
//! # Delivery
//! At least once: a message's offset is committed after its answer was delivered to Kafka.
//! When the API server or Redis fails, the message is tried again with a growing pause, at
//! most [`HANDLE_ATTEMPTS`] times, then answered with an error naming the failure; while
//! Kafka cannot be reached, the answer waits and nothing after it is taken. So a crash or
//! restart may handle a message twice, which feeding and the actions tolerate (a second feed
//! finds the URL already a seed). An answer larger than [`MAX_ANSWER_BYTES`], or one Kafka
//! refuses for good, is replaced by an error answer saying so: one message never blocks the
//! ones after it. On SIGTERM the message in hand is finished and committed, then the process
//! exits.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use kubecrawl_api::contract;
use kubecrawl_frontier::Frontier;
use kubecrawl_process::connect::kafka::is_permanent_refusal;
use kubecrawl_process::format_chain;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::actions::{self, STATS_KINDS};
use crate::args::IngestArgs;
use crate::jobs::{Jobs, Selector};
use crate::request::{self, CrawlRequest, Fields};
use crate::stats::{self, StatsRequest};
use crate::{Error, Refusal, Result};

/// The fields an action request may have.
pub const ACTION_FIELDS: [&str; 6] = ["action", "appid", "uuid", "crawlid", "spiderid", "stats"];
/// How long an answer may wait for Kafka's acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer sent: below librdkafka's default `message.max.bytes` (1,000,000) and
/// the broker's default record limit (1 MiB), so an answer that fits here is never refused
/// for its size.
pub const MAX_ANSWER_BYTES: usize = 900_000;
/// How many times a request is tried when the API server or Redis fails, before it is
/// answered with an error.
pub const HANDLE_ATTEMPTS: u32 = 5;
/// The pause after a consumer error, so that a broker that is down costs no busy loop.
const ERROR_PAUSE: Duration = Duration::from_millis(200);
/// The first and the longest pause before a message is tried again.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// An action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// A crawl's (or an app's crawls') status and counts.
    Info,
    /// Delete crawls.
    Stop,
    /// Expire crawls now.
    Expire,
    /// The stats dump and backlog.
    Stats,
}

impl ActionKind {
    /// The action's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Stop => "stop",
            Self::Expire => "expire",
            Self::Stats => "stats",
        }
    }
}

/// A checked action request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// The request's uuid, echoed in the answer.
    pub uuid: String,
    /// Which crawls (appid always set).
    pub selector: Selector,
    /// For `stats`: which stats (one of [`STATS_KINDS`]).
    pub stats: String,
}

/// A message of `<prefix>.incoming`.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A crawl request.
    Crawl(Box<CrawlRequest>),
    /// An action request.
    Action(Action),
    /// A stats request in Scrapy Cluster's form (no `action`).
    Stats(StatsRequest),
}

/// A message that is not a valid request, with what could be learnt of it for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its uuid, when one was found.
    pub uuid: Option<String>,
    /// Its action (`crawl` for a crawl request), when known.
    pub action: Option<String>,
    /// What is wrong.
    pub refusal: Refusal,
}

static UUID_IN_TEXT: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r#""uuid"\s*:\s*"((?:[^"\\]|\\.){1,256})""#).ok());

/// Parses one message.
///
/// # Errors
/// [`Rejected`] for a message that is not a valid crawl or action request.
pub fn parse(payload: &[u8], now_s: i64) -> Result<Incoming, Box<Rejected>> {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            let text = String::from_utf8_lossy(payload);
            let uuid = UUID_IN_TEXT
                .as_ref()
                .and_then(|re| re.captures(&text))
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_owned());
            return Err(Box::new(Rejected {
                uuid,
                action: None,
                refusal: Refusal::new("request", format!("is not valid JSON: {e}")),
            }));
        }
    };
    let Value::Object(object) = value else {
        return Err(Box::new(Rejected {
            uuid: None,
            action: None,
            refusal: Refusal::new(
                "request",
                format!("must be a JSON object, not {}", request::kind(&value)),
            ),
        }));
    };
    let uuid = object
        .get("uuid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if object.contains_key("action") {
        let action = object
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return parse_action(&object)
            .map(Incoming::Action)
            .map_err(|refusal| {
                Box::new(Rejected {
                    uuid,
                    action,
                    refusal,
                })
            });
    }
    if stats::is_stats_request(&object) {
        return stats::parse(&object)
            .map(Incoming::Stats)
            .map_err(|refusal| {
                Box::new(Rejected {
                    uuid,
                    action: None,
                    refusal,
                })
            });
    }
    request::parse(&object, now_s)
        .map(|r| Incoming::Crawl(Box::new(r)))
        .map_err(|refusal| {
            Box::new(Rejected {
                uuid,
                action: Some("crawl".to_owned()),
                refusal,
            })
        })
}

fn parse_action(object: &Map<String, Value>) -> Result<Action, Refusal> {
    if let Some(unknown) = object.keys().find(|k| !ACTION_FIELDS.contains(&k.as_str())) {
        return Err(Refusal::new(
            unknown,
            format!(
                "unknown field; an action request has {}",
                ACTION_FIELDS.join(", ")
            ),
        ));
    }
    let fields = Fields(object);
    let name = fields.string("action", 1, 16)?.unwrap_or_default();
    let kind = match name.as_str() {
        "info" => ActionKind::Info,
        "stop" => ActionKind::Stop,
        "expire" => ActionKind::Expire,
        "stats" => ActionKind::Stats,
        other => {
            return Err(Refusal::new(
                "action",
                format!("{other:?} is not an action; use info, stop, expire or stats"),
            ));
        }
    };
    let id_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    let appid = fields
        .name("appid", 64, id_char)?
        .ok_or_else(|| Refusal::new("appid", "is required".to_owned()))?;
    let uuid = fields
        .string("uuid", 1, 256)?
        .ok_or_else(|| Refusal::new("uuid", "is required".to_owned()))?;
    let crawlid = fields.name("crawlid", 128, id_char)?;
    if crawlid.is_none() && matches!(kind, ActionKind::Stop | ActionKind::Expire) {
        // Scrapy Cluster refuses these too: one request must never end every crawl of an app.
        return Err(Refusal::new(
            "crawlid",
            format!("is required: {name} acts on one crawl, named by its crawlid and appid"),
        ));
    }
    let spiderid = fields.string("spiderid", 1, 40)?;
    let stats = fields
        .string("stats", 1, 32)?
        .unwrap_or_else(|| "all".to_owned());
    if kind != ActionKind::Stats && object.contains_key("stats") {
        return Err(Refusal::new(
            "stats",
            format!("only the stats action takes it, not {name}"),
        ));
    }
    if !STATS_KINDS.contains(&stats.as_str()) {
        return Err(Refusal::new(
            "stats",
            format!(
                "{stats:?} is not available in kubecrawl; use {}",
                STATS_KINDS.join(", ")
            ),
        ));
    }
    Ok(Action {
        kind,
        uuid,
        selector: Selector {
            crawlid,
            appid: Some(appid),
            spiderid,
        },
        stats,
    })
}

/// The answer to a message that could not be carried out. `action` and `uuid` are left out
/// when the message had none: Scrapy Cluster's REST service takes any message with a `uuid`
/// key for the answer to one of its requests.
pub fn error_answer(
    action: Option<&str>,
    uuid: Option<&str>,
    field: Option<&str>,
    message: &str,
) -> Value {
    let mut answer = Map::new();
    if let Some(action) = action {
        answer.insert("action".into(), json!(action));
    }
    if let Some(uuid) = uuid {
        answer.insert("uuid".into(), json!(uuid));
    }
    answer.insert("server_time".into(), json!(crate::now_s()));
    answer.insert("error".into(), json!({"field": field, "message": message}));
    Value::Object(answer)
}

fn with_header(action: &str, uuid: &str, mut body: Map<String, Value>) -> Value {
    body.insert("action".into(), json!(action));
    body.insert("uuid".into(), json!(uuid));
    Value::Object(body)
}

/// Carries out messages: CrawlJob changes through [`Jobs`], statistics from the frontier.
#[derive(Clone)]
pub struct Handler {
    jobs: Jobs,
    frontier: Arc<dyn Frontier>,
    spiders: Vec<String>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("jobs", &self.jobs)
            .field("spiders", &self.spiders)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// A handler writing CrawlJobs through `jobs` and reading stats from `frontier` (for
    /// `spiders` and every spider with live workers).
    pub fn new(jobs: Jobs, frontier: Arc<dyn Frontier>, spiders: Vec<String>) -> Self {
        Self {
            jobs,
            frontier,
            spiders,
        }
    }

    /// Handles one message; returns its answer (`None`: a crawl request without uuid that
    /// succeeded).
    ///
    /// # Errors
    /// Only transient failures ([`Error::is_transient`]): the message should be tried again.
    /// Everything else is answered.
    pub async fn handle(&self, payload: &[u8]) -> Result<Option<Value>> {
        let incoming = match parse(payload, crate::now_s()) {
            Ok(incoming) => incoming,
            Err(rejected) => {
                tracing::info!(uuid = ?rejected.uuid, field = %rejected.refusal.field, "request refused");
                return Ok(Some(error_answer(
                    rejected.action.as_deref(),
                    rejected.uuid.as_deref(),
                    Some(&rejected.refusal.field),
                    &rejected.refusal.message,
                )));
            }
        };
        let (action, uuid, result) = match &incoming {
            Incoming::Crawl(request) => {
                let result = self.jobs.feed(request).await.map(|fed| {
                    request.uuid.as_ref().map(|uuid| {
                        let mut body = Map::new();
                        body.insert("server_time".into(), json!(crate::now_s()));
                        body.insert("appid".into(), json!(request.spec.appid));
                        body.insert("crawlid".into(), json!(request.crawlid()));
                        body.insert("spiderid".into(), json!(request.spec.spiderid));
                        body.insert("namespace".into(), json!(fed.namespace));
                        body.insert("name".into(), json!(fed.name));
                        body.insert("result".into(), json!(fed.outcome.as_str()));
                        with_header("crawl", uuid, body)
                    })
                });
                ("crawl", request.uuid.as_deref(), result)
            }
            Incoming::Action(a) => {
                let result = self
                    .act(a)
                    .await
                    .map(|body| Some(with_header(a.kind.as_str(), &a.uuid, body)));
                (a.kind.as_str(), Some(a.uuid.as_str()), result)
            }
            Incoming::Stats(request) => {
                let result = stats::answer(self.frontier.as_ref(), &self.spiders, request)
                    .await
                    .map(|body| Some(Value::Object(body)));
                ("stats", Some(request.uuid.as_str()), result)
            }
        };
        match result {
            Ok(answer) => Ok(answer),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                let message = match &e {
                    Error::Refused(r) => r.message.clone(),
                    other => format_chain(other),
                };
                tracing::info!(action, uuid = ?uuid, error = %message, "request not carried out");
                Ok(Some(error_answer(Some(action), uuid, e.field(), &message)))
            }
        }
    }

    async fn act(&self, action: &Action) -> Result<Map<String, Value>> {
        let selector = &action.selector;
        let appid = selector.appid.clone().unwrap_or_default();
        match action.kind {
            ActionKind::Stats => {
                let stats =
                    actions::stats(self.frontier.as_ref(), &self.spiders, &action.stats).await?;
                let mut body = match stats {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                body.insert("appid".into(), json!(appid));
                Ok(body)
            }
            ActionKind::Info if selector.crawlid.is_some() => {
                let job = self.jobs.find_one(selector).await?;
                actions::crawl_info(self.frontier.as_ref(), &job).await
            }
            ActionKind::Info => {
                let jobs = self.jobs.find(selector).await?;
                let spiderid = selector.spiderid.as_deref();
                actions::app_info(self.frontier.as_ref(), &appid, spiderid, &jobs).await
            }
            ActionKind::Stop | ActionKind::Expire => {
                // parse_action refused these without a crawlid: exactly one crawl.
                let found = vec![self.jobs.find_one(selector).await?];
                if action.kind == ActionKind::Stop {
                    actions::stop(&self.jobs, &found).await
                } else {
                    actions::expire(&self.jobs, &found).await
                }
            }
        }
    }
}

/// Runs the ingest until `shutdown`.
///
/// # Errors
/// Start-up failures: no Kubernetes configuration, Redis unreachable, an unusable Kafka
/// configuration.
pub async fn run(args: &IngestArgs, shutdown: CancellationToken) -> Result<()> {
    let jobs = Jobs::connect(args.kube.namespace.as_deref()).await?;
    let frontier = actions::connect_frontier(&args.redis).await?;
    let handler = Handler::new(jobs, frontier, args.redis.spiders.clone());
    let topic = contract::topic::incoming(&args.kafka.topic_prefix);
    let answers = contract::topic::outbound(&args.kafka.topic_prefix);
    let (consumer, producer) = kafka_clients(args, &topic).await?;
    tracing::info!(topic, answers, namespace = %handler.jobs.namespace(), group = %args.group, "ingest started");
    let announcer_stop = shutdown.child_token();
    let announcer = tokio::spawn(crate::expired::run(
        handler.jobs.clone(),
        producer.clone(),
        answers.clone(),
        announcer_stop.clone(),
    ));
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // A topic not created yet, a broker restarting: librdkafka recovers.
                tracing::debug!(error = %e, "no message");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(handled) =
            handle(&handler, message.payload().unwrap_or_default(), &shutdown).await
        else {
            break;
        };
        if let Some(answer) = handled
            && !send_answer(&producer, &answers, answer, &shutdown).await
        {
            break;
        }
        if let Err(e) = consumer.commit_message(&message, CommitMode::Sync) {
            tracing::warn!(error = %e, "committing the offset failed; the message may be handled again");
        }
    }
    tracing::info!("ingest stopping");
    announcer_stop.cancel();
    if let Err(e) = announcer.await {
        tracing::warn!(error = %e, "the expiry announcer ended abnormally");
    }
    Ok(())
}

/// The consumer of the incoming topic (in the ingest's group, offsets committed by hand)
/// and the producer of answers.
async fn kafka_clients(args: &IngestArgs, topic: &str) -> Result<(StreamConsumer, FutureProducer)> {
    let kafka = crate::dump::client_config(&args.kafka).await?;
    let consumer: StreamConsumer = kafka
        .clone()
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .create()
        .map_err(Error::kafka("create consumer"))?;
    consumer
        .subscribe(&[topic])
        .map_err(Error::kafka("subscribe"))?;
    let producer: FutureProducer = kafka
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create()
        .map_err(Error::kafka("create producer"))?;
    Ok((consumer, producer))
}

/// Handles one message with bounded retries: its answer (`Some(None)`: none due), an error
/// answer once the attempts are used up, `None` when `shutdown` came first.
async fn handle(
    handler: &Handler,
    payload: &[u8],
    shutdown: &CancellationToken,
) -> Option<Option<Value>> {
    match with_retries(shutdown, "handle request", Some(HANDLE_ATTEMPTS), || {
        handler.handle(payload)
    })
    .await
    {
        Attempts::Done(answer) => Some(answer),
        Attempts::GaveUp(e) => {
            tracing::error!(error = %format_chain(&e), "request failed after every attempt, answering with the error");
            let (action, uuid) = request_header(payload);
            Some(Some(error_answer(
                action.as_deref(),
                uuid.as_deref(),
                None,
                &format!("could not be carried out: {}", format_chain(&e)),
            )))
        }
        Attempts::Stopped => None,
    }
}

/// Sends one answer, waiting while Kafka cannot be reached. An answer too large, or one
/// Kafka refuses for good, is replaced by an error answer (once); if Kafka refuses even
/// that, the refusal is logged and the message goes on. False when `shutdown` came first.
pub(crate) async fn send_answer(
    producer: &FutureProducer,
    topic: &str,
    answer: Value,
    shutdown: &CancellationToken,
) -> bool {
    let mut text = fit_answer(&answer, MAX_ANSWER_BYTES);
    let key = answer
        .get("uuid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    for last in [false, true] {
        let sent = with_retries(shutdown, "send answer", None, || async {
            match producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&text),
                    DELIVERY_TIMEOUT,
                )
                .await
            {
                Ok(_) => Ok(Ok(())),
                Err((e, _)) if is_permanent_refusal(&e) => Ok(Err(e)),
                Err((e, _)) => Err(Error::kafka("send answer")(e)),
            }
        })
        .await;
        match sent {
            Attempts::Done(Ok(())) => return true,
            Attempts::Done(Err(e)) if !last => {
                tracing::error!(error = %e, "kafka refused the answer, answering with the error");
                text =
                    refused_answer(&answer, &format!("kafka refused the answer: {e}")).to_string();
            }
            Attempts::Done(Err(e)) => {
                tracing::error!(error = %e, "kafka refused even the error answer; the request stays unanswered");
                return true;
            }
            Attempts::GaveUp(_) | Attempts::Stopped => return !shutdown.is_cancelled(),
        }
    }
    true
}

/// The answer as sent: itself when it fits in `limit` bytes, else an error answer with its
/// action and uuid that says how large it was.
pub fn fit_answer(answer: &Value, limit: usize) -> String {
    let text = answer.to_string();
    if text.len() <= limit {
        return text;
    }
    tracing::warn!(
        bytes = text.len(),
        limit,
        "answer too large, answering with an error"
    );
    refused_answer(
        answer,
        &format!(
            "the answer is {} bytes, more than the {limit} bytes one Kafka message may carry; ask for less (a crawlid, a spiderid, or stats of one kind)",
            text.len()
        ),
    )
    .to_string()
}

/// An error answer in place of `answer`, keeping its action and uuid.
fn refused_answer(answer: &Value, message: &str) -> Value {
    error_answer(
        answer.get("action").and_then(Value::as_str),
        answer.get("uuid").and_then(Value::as_str),
        None,
        message,
    )
}

/// The action (`crawl` when it has none) and uuid of a request that parsed once already.
fn request_header(payload: &[u8]) -> (Option<String>, Option<String>) {
    let value: Value = serde_json::from_slice(payload).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    (field("action").or(Some("crawl".to_owned())), field("uuid"))
}

/// What a retried operation came to.
enum Attempts<T> {
    /// It succeeded.
    Done(T),
    /// It failed every attempt; the last error.
    GaveUp(Error),
    /// `shutdown` came first (the message is then left uncommitted, for the next consumer).
    Stopped,
}

/// Runs `op` until it succeeds, pausing longer after each failure, at most `attempts` times
/// (`None`: until it succeeds or `shutdown`).
async fn with_retries<T, F, Fut>(
    shutdown: &CancellationToken,
    what: &'static str,
    attempts: Option<u32>,
    mut op: F,
) -> Attempts<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut pause = RETRY_PAUSE.0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Attempts::Done(v),
            Err(e) if attempts.is_some_and(|max| attempt >= max) => return Attempts::GaveUp(e),
            Err(e) => {
                tracing::warn!(op = what, attempt, error = %format_chain(&e), retry_in = ?pause, "failed, trying again");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Attempts::Stopped,
            () = tokio::time::sleep(pause) => {},
        }
        pause = (pause * 2).min(RETRY_PAUSE.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn rejected(payload: &str) -> Rejected {
        *parse(payload.as_bytes(), NOW).expect_err("rejected")
    }

    #[test]
    fn crawl_and_action_requests_are_told_apart() {
        let crawl = parse(
            br#"{"url": "http://a.test/", "appid": "testapp", "crawlid": "c1"}"#,
            NOW,
        )
        .expect("valid");
        assert!(matches!(crawl, Incoming::Crawl(_)));
        let info = parse(
            br#"{"action": "info", "appid": "testapp", "crawlid": "c1", "spiderid": "link", "uuid": "u1"}"#,
            NOW,
        )
        .expect("valid");
        let Incoming::Action(a) = info else {
            panic!("an action")
        };
        assert_eq!(a.kind, ActionKind::Info);
        assert_eq!(a.uuid, "u1");
        assert_eq!(a.selector.crawlid.as_deref(), Some("c1"));
    }

    #[test]
    fn the_uuid_is_found_even_in_broken_json() {
        let r = rejected(r#"{"action": "info", "uuid": "lost-1", "appid": "#);
        assert_eq!(r.uuid.as_deref(), Some("lost-1"));
        assert_eq!(r.refusal.field, "request");
        assert!(r.refusal.message.contains("not valid JSON"));
        assert_eq!(rejected("not json at all").uuid, None);
    }

    #[test]
    fn invalid_requests_keep_their_uuid_and_name_the_field() {
        let r = rejected(r#"{"action": "explode", "appid": "a", "uuid": "u2"}"#);
        assert_eq!(
            (r.uuid.as_deref(), r.refusal.field.as_str()),
            (Some("u2"), "action")
        );
        let r = rejected(r#"{"action": "info", "appid": "a"}"#);
        assert_eq!(r.refusal.field, "uuid");
        let r = rejected(r#"{"action": "stats", "appid": "a", "uuid": "u", "stats": "machine"}"#);
        assert_eq!(r.refusal.field, "stats");
        let r = rejected(
            r#"{"url": "http://a.test/", "appid": "a", "crawlid": "c", "priority": 0, "uuid": "u3"}"#,
        );
        assert_eq!(
            (
                r.uuid.as_deref(),
                r.action.as_deref(),
                r.refusal.field.as_str()
            ),
            (Some("u3"), Some("crawl"), "priority")
        );
        assert_eq!(rejected("[1, 2]").refusal.field, "request");
    }

    /// Regression: a `stats` answer over Kafka's message limit was retried forever and
    /// blocked every message after it.
    #[test]
    fn an_answer_too_large_becomes_an_error_answer_that_fits() {
        let big = json!({"action": "stats", "uuid": "u-1", "queue": "x".repeat(2_000)});
        let text = fit_answer(&big, 1_000);
        assert!(text.len() <= 1_000, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["uuid"], "u-1");
        assert_eq!(v["action"], "stats");
        let message = v["error"]["message"].as_str().expect("a message");
        assert!(message.contains("more than the 1000 bytes"), "{message}");
        let small = json!({"action": "stats", "uuid": "u-2"});
        assert_eq!(fit_answer(&small, 1_000), small.to_string());
    }

    #[test]
    fn the_header_of_a_request_names_its_action_and_uuid() {
        assert_eq!(
            request_header(br#"{"action":"info","uuid":"a","appid":"x"}"#),
            (Some("info".to_owned()), Some("a".to_owned()))
        );
        assert_eq!(
            request_header(br#"{"url":"http://a.test/","appid":"x","uuid":"b"}"#),
            (Some("crawl".to_owned()), Some("b".to_owned()))
        );
    }

    #[test]
    fn error_answers_carry_uuid_field_and_message() {
        let a = error_answer(Some("info"), Some("u"), Some("crawlid"), "no such crawl");
        assert_eq!(a["uuid"], "u");
        assert_eq!(a["error"]["field"], "crawlid");
        assert_eq!(a["error"]["message"], "no such crawl");
        assert!(a["server_time"].as_i64().is_some());
    }
}
