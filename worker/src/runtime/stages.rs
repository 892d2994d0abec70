//! The path of one lease, in stages: the job's policy → robots.txt → fetch → (a recrawl
//! round's unchanged page ends here, see [`crate::recrawl`]) → parse → WARC records (when
//! enabled, `runtime/archive.rs`) → publish → acknowledge.
//!
//! Each stage either hands its result to the next or ends the lease's handling (acknowledged,
//! retried or given back) and says how with a [`LeaseOutcome`]; see the parent module for
//! the guarantees the stages keep together.

use std::sync::Arc;
use std::time::SystemTime;

use kubecrawl_api::{CrawlRequest, PageRecord, SitemapRole};
use kubecrawl_frontier::{Completion, DomainHint, Lease, Outcome, RetryOutcome, RetryRequest};
use url::Url;

use super::{JobContext, LeaseOutcome, SINK_PAUSE, Worker, format_chain, lock};
use crate::adaptive::Answer;
use crate::charset::{self, Decoded};
use crate::extract::{self, Signals};
use crate::fetch::{FetchErrorKind, Fetched, RequestOptions};
use crate::recrawl::{self, Verdict};
use crate::spider::{Output, Response};
use crate::{sitemap, traps};

/// What a stage hands on: `Ok`, the next stage's input; `Err`, the lease's outcome, its
/// handling having ended in this stage.
pub(super) type Stage<T> = Result<T, LeaseOutcome>;

/// Bodies up to this size are parsed in the lease's own task: a 128 KiB page takes well under
/// a millisecond, less than handing it to a blocking thread and back costs in wake-ups on a
/// busy worker. Larger bodies go to a blocking thread.
const INLINE_PARSE_BYTES: usize = 128 * 1024;

/// What the spider made of a page.
struct Parsed {
    status: u16,
    bytes: u64,
    items: Vec<PageRecord>,
    /// The spider's requests, and the target of a redirect to another host.
    children: Vec<CrawlRequest>,
    /// The furthest `step` an item's attrs name (the wandering spider's hop count).
    step: Option<u32>,
    /// The job's counters to add (what rendering did).
    counters: Vec<(&'static str, u64)>,
}

impl Worker {
    /// Handles one lease to its acknowledgement. Never fails: every outcome is counted.
    pub(super) async fn handle(&self, lease: Lease) {
        let key = lease.id.to_string();
        let outcome = match tokio::time::timeout(self.config.page_timeout, self.process(&lease))
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(timeout = ?self.config.page_timeout, "page took too long, retrying");
                self.retry(&lease, RetryRequest::default(), LeaseOutcome::PageTimeout)
                    .await
            }
        };
        self.metrics.page(&self.config.spiderid, outcome);
        self.lock_leased().remove(&key);
    }

    async fn process(&self, lease: &Lease) -> LeaseOutcome {
        match self.stages(lease).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn stages(&self, lease: &Lease) -> Stage<LeaseOutcome> {
        let job = self.read_job(lease).await?;
        let Ok(url) = Url::parse(&lease.request.url) else {
            tracing::warn!("unparsable url in the frontier");
            return Err(self
                .ack(lease, Outcome::failed(), LeaseOutcome::InvalidUrl)
                .await);
        };
        // A recrawling job's request for a page fetched before carries its validators.
        let previous = job
            .policy
            .recrawl
            .then(|| lease.request.validators())
            .flatten();
        let options = RequestOptions {
            user_agent: job.policy.useragent.as_deref(),
            cookie: url.host_str().and_then(|h| job.policy.cookie_for(h)),
            referer: lease.request.referer.as_deref(),
            max_body: None,
            if_none_match: previous.as_ref().and_then(|v| v.etag.as_deref()),
            if_modified_since: previous.as_ref().and_then(|v| v.last_modified.as_deref()),
        };
        let obey_robots = job.obeys_robots();
        let sitemap = lease.request.sitemap_role();
        // robots.txt itself is always fetched (RFC 9309).
        if obey_robots && sitemap != Some(SitemapRole::Robots) {
            self.check_robots(lease, &url, &options).await?;
        }
        if let Some(role) = sitemap {
            // A sitemap is read up to 50 MiB, so only a few at a time per worker.
            let _slot = self.sitemap_slots.acquire().await.ok();
            let options = RequestOptions {
                max_body: matches!(role, SitemapRole::Sitemap { .. }).then_some(sitemap::MAX_BYTES),
                ..options
            };
            let page = self
                .fetch_page(lease, &job, &url, &options, obey_robots)
                .await?;
            let outcome = self.read_sitemap(lease, &job, role, &page).await;
            return Ok(self.ack(lease, outcome, LeaseOutcome::Ok).await);
        }
        let page = self
            .fetch_page(lease, &job, &url, &options, obey_robots)
            .await?;
        // What the next recrawl round should send for this page.
        let learnt = job
            .policy
            .recrawl
            .then(|| recrawl::learnt(previous.as_ref(), &page));
        let verdict = recrawl::verdict(previous.as_ref(), &page);
        if verdict == Verdict::Unchanged {
            let mut outcome = Outcome::status(page.status, page.body.len() as u64)
                .with_counter(recrawl::UNCHANGED, 1);
            if !recrawl::gone_for_good(&page) {
                outcome = outcome.remembering(lease.request.remembered(learnt.as_ref()));
            }
            return Ok(self.ack(lease, outcome, LeaseOutcome::Unchanged).await);
        }
        let exchange = self.capture(lease, &page);
        let parsed = self.parse_page(lease, &job, page).await?;
        self.archive(lease, exchange, &parsed.items).await?;
        let mut outcome = self.publish_items(lease, parsed).await?;
        if let Some(learnt) = learnt {
            if verdict == Verdict::Changed {
                outcome = outcome.with_counter(recrawl::CHANGED, 1);
            }
            outcome = outcome.remembering(lease.request.remembered(Some(&learnt)));
        }
        Ok(self.ack(lease, outcome, LeaseOutcome::Ok).await)
    }

    /// The job's policy. A job that is gone has its lease acknowledged; a transient frontier
    /// error gives the lease back (never counting the request as done); any other error
    /// retries.
    async fn read_job(&self, lease: &Lease) -> Stage<Arc<JobContext>> {
        match self.job(&lease.job).await {
            Ok(Some(job)) => Ok(job),
            Ok(None) => Err(self
                .ack(lease, Outcome::failed(), LeaseOutcome::JobGone)
                .await),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %format_chain(&e), "reading the job's policy failed, giving the lease back");
                self.give_back(lease).await;
                Err(LeaseOutcome::PolicyUnavailable)
            }
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "the job's policy cannot be read, retrying");
                Err(self
                    .retry(
                        lease,
                        RetryRequest::default(),
                        LeaseOutcome::PolicyUnreadable,
                    )
                    .await)
            }
        }
    }

    /// robots.txt: a fresh Crawl-delay is reported to the frontier; a disallowed URL is
    /// acknowledged as an error; robots.txt that cannot be fetched retries later.
    async fn check_robots(
        &self,
        lease: &Lease,
        url: &Url,
        options: &RequestOptions<'_>,
    ) -> Stage<()> {
        let verdict = self.robots.check(&self.fetcher, url, options).await;
        if verdict.unreachable {
            return Err(self.robots_unreachable(lease).await);
        }
        if verdict.fresh
            && let Some(delay) = verdict.crawl_delay
        {
            self.report_domain(lease, DomainHint::CrawlDelay(delay))
                .await;
        }
        if !verdict.allowed {
            tracing::debug!("disallowed by robots.txt");
            return Err(self
                .ack(lease, Outcome::failed(), LeaseOutcome::RobotsDenied)
                .await);
        }
        Ok(())
    }

    /// Fetches the page, following redirects on its host that the job's filter and the
    /// host's robots.txt allow. While retries are left, a transient failure or a status the
    /// server asks to retry (429, 5xx) schedules a retry; any other failure is acknowledged
    /// as an error.
    async fn fetch_page(
        &self,
        lease: &Lease,
        job: &JobContext,
        url: &Url,
        options: &RequestOptions<'_>,
        obey_robots: bool,
    ) -> Stage<Fetched> {
        // The host slot bounds concurrent fetches to one host; parsing and publishing do not
        // touch the host, so the slot is given back as soon as the body is read.
        let host_slot = self.host_slot(&lease.domain).await;
        let follow = |next: &Url| {
            next.host_str() == url.host_str()
                && (!obey_robots || self.robots.cached_allows(next) == Some(true))
                && job.filter.as_ref().is_none_or(|f| {
                    let mut hop = lease.request.clone();
                    hop.url = next.to_string();
                    hop.depth = 0;
                    f.check(&hop).is_ok()
                })
        };
        let fetched = self.fetcher.fetch(url, options, follow).await;
        drop(host_slot);
        let answer = match &fetched {
            Ok(page) if matches!(page.status, 429 | 503) => Some(Answer::Overloaded),
            Ok(page) => Some(Answer::Answered(page.elapsed)),
            Err(e)
                if matches!(
                    e.kind(),
                    FetchErrorKind::Timeout | FetchErrorKind::Transport
                ) =>
            {
                Some(Answer::Overloaded)
            }
            Err(_) => None,
        };
        if let Some(answer) = answer {
            self.adapt(lease, answer).await;
        }
        // An outage (5xx, 408, 429, a failure worth retrying) is for retries and adaptive
        // politeness, not a trap: a host down for a while is not cut off.
        let fetch = match &fetched {
            Ok(page) if page.status >= 500 || matches!(page.status, 408 | 429) => None,
            Ok(page) => Some(traps::Fetch::Response {
                status: page.status,
                body: xxhash_rust::xxh3::xxh3_64(&page.body),
            }),
            Err(e) if e.is_transient() => None,
            Err(_) => Some(traps::Fetch::Failed),
        };
        if let Some(fetch) = fetch {
            self.watch_for_traps(lease, fetch).await;
        }
        let last_try = lease.request.retries >= self.config.max_retries;
        let page = match fetched {
            Ok(page) => page,
            Err(e) if e.is_transient() && !last_try => {
                tracing::info!(error = %format_chain(&e), retries = lease.request.retries, "fetch failed, retrying");
                return Err(self
                    .retry(lease, RetryRequest::default(), LeaseOutcome::Retry)
                    .await);
            }
            Err(e) => {
                let kind = e.kind();
                tracing::warn!(error = %format_chain(&e), kind = kind.as_str(), "fetch failed");
                // A recrawling job tries the page again next round, as the server may be back.
                let mut failed = Outcome::failed();
                if job.policy.recrawl && lease.request.sitemap_role().is_none() {
                    let previous = lease.request.validators();
                    failed = failed.remembering(lease.request.remembered(previous.as_ref()));
                }
                return Err(self
                    .ack(lease, failed, LeaseOutcome::FetchFailed(kind))
                    .await);
            }
        };
        self.metrics
            .fetched(&self.config.spiderid, page.elapsed, page.body.len());
        if is_retryable_status(page.status) && !last_try {
            return Err(self.server_asked_retry(lease, &page).await);
        }
        Ok(page)
    }

    /// Learns from how the lease's host answered ([`crate::adaptive`]); a changed delay goes to
    /// the frontier, which spaces the host for every worker.
    async fn adapt(&self, lease: &Lease, answer: Answer) {
        let Some(delay) = self.adaptive.observe(&lease.domain, answer) else {
            return;
        };
        if delay.is_zero() {
            tracing::info!(host = %lease.domain, "host answers well again, adaptive delay cleared");
        } else {
            tracing::info!(host = %lease.domain, ?delay, "adaptive delay for the host");
        }
        self.metrics.adaptive_delays(&self.adaptive.slowed());
        self.report_domain(lease, DomainHint::Adaptive(delay)).await;
    }

    /// Cuts the lease's host off for its job when it shows itself a crawler trap
    /// ([`crate::traps`]). If the frontier cannot record it now, the next page of the host
    /// tries again.
    async fn watch_for_traps(&self, lease: &Lease, fetch: traps::Fetch) {
        let job = lease.job.to_string();
        let Some(trap) = self
            .traps
            .observe(&job, &lease.domain, &lease.request.url, fetch)
        else {
            return;
        };
        tracing::warn!(host = %lease.domain, job = %lease.job, reason = trap.reason(), "crawler trap: host cut off for the job");
        self.metrics.trap(trap.label());
        if let Err(e) = self
            .frontier
            .cut_off(&lease.job, &lease.domain, trap.reason())
            .await
        {
            tracing::warn!(host = %lease.domain, error = %format_chain(&e), "recording the cut-off failed; the host's next page tries again");
            self.traps.forget(&job, &lease.domain);
        }
    }

    /// A 429 or 5xx with retries left: the retry waits for the Retry-After, which the
    /// frontier also applies to the whole domain.
    async fn server_asked_retry(&self, lease: &Lease, page: &Fetched) -> LeaseOutcome {
        let retry_after = page.retry_after();
        if let Some(after) = retry_after {
            self.report_domain(lease, DomainHint::RetryAfter(after))
                .await;
        }
        tracing::info!(
            status = page.status,
            retries = lease.request.retries,
            "server asked to retry"
        );
        let retry = RetryRequest {
            not_before: retry_after,
            status: Some(page.status),
        };
        self.retry(lease, retry, LeaseOutcome::Retry).await
    }

    /// Runs the spider on the page (decoding and link extraction included), rendered first
    /// when the job renders it ([`Self::render_page`]). The CPU work runs in this task for a
    /// body up to [`INLINE_PARSE_BYTES`], on a blocking thread for a larger one, so that a
    /// huge page never stalls the runtime's other tasks. A spider that panics has its lease
    /// acknowledged with the page's status.
    async fn parse_page(
        &self,
        lease: &Lease,
        job: &Arc<JobContext>,
        page: Fetched,
    ) -> Stage<Parsed> {
        let status = page.status;
        let bytes = page.body.len() as u64;
        let handed_over = redirect_elsewhere(&page, lease);
        let big = page.body.len() > INLINE_PARSE_BYTES;
        let (response_lease, response_job) = (lease.clone(), job.clone());
        let built = cpu(big, move || {
            build_response(&response_lease, page, &response_job)
        })
        .await;
        let (response, signals) = match built {
            Ok(built) => built,
            Err(e) => {
                return Err(self
                    .panicked(lease, status, bytes, "reading the page", &e)
                    .await);
            }
        };
        let mut counters = Vec::new();
        let response = match job.render.as_ref() {
            Some(plan) => {
                self.render_page(
                    lease,
                    plan,
                    response,
                    &signals,
                    job.obeys_robots(),
                    &mut counters,
                )
                .await?
            }
            None => response,
        };
        let big = big || response.body.len() > INLINE_PARSE_BYTES;
        let spider = self.spider.clone();
        let parsed = cpu(big, move || spider.parse(&response)).await;
        let outputs = match parsed {
            Ok(outputs) => outputs,
            Err(e) => return Err(self.panicked(lease, status, bytes, "spider", &e).await),
        };
        let mut children: Vec<CrawlRequest> = handed_over.into_iter().collect();
        let mut items: Vec<PageRecord> = Vec::new();
        for output in outputs {
            match output {
                Output::Request(request) => children.push(request),
                Output::Item(item) => items.push(*item),
            }
        }
        let step = items
            .iter()
            .filter_map(|i| i.attrs.get("step").and_then(serde_json::Value::as_u64))
            .max()
            .and_then(|s| u32::try_from(s).ok());
        Ok(Parsed {
            status,
            bytes,
            items,
            children,
            step,
            counters,
        })
    }

    /// `what` panicked on the page: logged, and the lease acknowledged with the page's status.
    async fn panicked(
        &self,
        lease: &Lease,
        status: u16,
        bytes: u64,
        what: &str,
        message: &str,
    ) -> LeaseOutcome {
        tracing::error!(error = %message, "{what} panicked");
        self.ack(
            lease,
            Outcome::status(status, bytes),
            LeaseOutcome::SpiderPanicked,
        )
        .await
    }

    /// A sitemap request's answer, read instead of parsed ([`crate::sitemap`]): the sitemaps
    /// or pages it lists become its children (pages at depth 0, like seeds), and what was
    /// found is added to the job's `sitemaps_*` counters. A sitemap that is missing,
    /// malformed or past a bound is logged with its reason and counted as failed; whatever
    /// was read of it is kept, and the crawl goes on.
    async fn read_sitemap(
        &self,
        lease: &Lease,
        job: &JobContext,
        role: SitemapRole,
        page: &Fetched,
    ) -> Outcome {
        let outcome = Outcome::status(page.status, page.body.len() as u64);
        let answered = (200..300).contains(&page.status);
        let level = match role {
            SitemapRole::Robots => {
                if !answered {
                    tracing::info!(status = page.status, "no robots.txt to read sitemaps from");
                    return outcome;
                }
                let listed = sitemap::robots_sitemaps(&page.body, &page.final_url);
                tracing::info!(sitemaps = listed.len(), "sitemaps listed in robots.txt");
                let role = Some(SitemapRole::Sitemap { level: 0 });
                let children = listed
                    .into_iter()
                    .map(|url| lease.request.listed(url, role))
                    .collect();
                return outcome.with_children(children);
            }
            SitemapRole::Sitemap { level } => level,
        };
        if !answered {
            tracing::warn!(status = page.status, "sitemap unavailable");
            self.metrics.sitemap("unavailable");
            return outcome.with_counter("sitemaps_failed", 1);
        }
        let since = job.policy.sitemaps_modified_since;
        // A large sitemap takes a while to read (about 70 – 190 ms for 50,000 URLs): off the
        // runtime's threads, as large pages are parsed.
        let listing = if page.body.len() <= INLINE_PARSE_BYTES {
            sitemap::read(&page.body, page.truncated, since)
        } else {
            let (body, truncated) = (page.body.clone(), page.truncated);
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                sitemap::read(&body, truncated, since)
            })
            .await
            .unwrap_or_else(|e| sitemap::Listing {
                problem: Some(sitemap::Problem::Malformed(format!("reading failed: {e}"))),
                ..sitemap::Listing::default()
            })
        };
        let mut children: Vec<CrawlRequest> = listing
            .pages
            .iter()
            .map(|url| lease.request.listed(url.as_str(), None))
            .collect();
        let mut problem = listing.problem.as_ref().map(|p| (p.label(), p.to_string()));
        if !listing.sitemaps.is_empty() {
            if level < sitemap::MAX_LEVEL {
                let role = Some(SitemapRole::Sitemap { level: level + 1 });
                children.extend(
                    listing
                        .sitemaps
                        .iter()
                        .map(|url| lease.request.listed(url.as_str(), role)),
                );
            } else {
                problem = problem.or(Some((
                    "too_deep",
                    format!(
                        "a sitemap index {} deep: its {} sitemaps are not read",
                        level + 1,
                        listing.sitemaps.len()
                    ),
                )));
            }
        }
        let outcome = outcome
            .with_counter("sitemaps_read", 1)
            .with_counter("sitemap_urls", listing.pages.len() as u64)
            .with_counter("sitemap_unmodified", listing.unmodified);
        let outcome = match problem {
            Some((label, reason)) => {
                tracing::warn!(
                    reason,
                    pages = listing.pages.len(),
                    sitemaps = listing.sitemaps.len(),
                    "sitemap not read whole"
                );
                self.metrics.sitemap(label);
                outcome.with_counter("sitemaps_failed", 1)
            }
            None => {
                tracing::info!(
                    pages = listing.pages.len(),
                    sitemaps = listing.sitemaps.len(),
                    unmodified = listing.unmodified,
                    "sitemap read"
                );
                self.metrics.sitemap("ok");
                outcome
            }
        };
        outcome.with_children(children)
    }

    /// Publishes every item and waits until each is durable; returns what to acknowledge.
    /// A record the sink does not take ends here (see [`Self::publish_failed`]).
    async fn publish_items(&self, lease: &Lease, parsed: Parsed) -> Stage<Outcome> {
        for item in &parsed.items {
            if let Err(e) = self.sink.publish(item).await {
                let failed = Outcome {
                    status: None,
                    bytes: parsed.bytes,
                    items: 0,
                    step: parsed.step,
                    children: parsed.children,
                    ..Outcome::default()
                };
                return Err(self.publish_failed(lease, item, &e, failed).await);
            }
        }
        Ok(Outcome {
            status: Some(parsed.status),
            bytes: parsed.bytes,
            items: parsed.items.len() as u64,
            step: parsed.step,
            children: parsed.children,
            counters: parsed.counters,
            ..Outcome::default()
        })
    }

    /// A record could not be published. Kafka unreachable or slow: the lease is given back
    /// and leasing pauses. Refused for good: retried with backoff while retries are left,
    /// then a dead-letter record names the reason and the lease is acknowledged as an error
    /// (its children still enqueued, so the crawl goes on).
    async fn publish_failed(
        &self,
        lease: &Lease,
        item: &PageRecord,
        error: &crate::sink::Error,
        failed: Outcome,
    ) -> LeaseOutcome {
        if !error.is_permanent() {
            tracing::error!(error = %format_chain(error), "publishing failed, giving the lease back");
            *lock(&self.sink_pause) = Some(std::time::Instant::now() + SINK_PAUSE);
            self.give_back(lease).await;
            return LeaseOutcome::PublishFailed;
        }
        let reason = error.reason();
        if lease.request.retries < self.config.max_retries {
            tracing::warn!(error = %format_chain(error), reason, retries = lease.request.retries, "record refused by the sink, retrying");
            return self
                .retry(lease, RetryRequest::default(), LeaseOutcome::PublishRetry)
                .await;
        }
        tracing::error!(error = %format_chain(error), reason, "record refused by the sink after every retry, dead-lettered");
        if let Err(e) = self.sink.dead_letter(item, &reason).await {
            tracing::error!(error = %format_chain(&e), reason, "publishing the dead-letter record failed");
        }
        self.ack(lease, failed, LeaseOutcome::DeadLettered).await
    }

    /// robots.txt could not be fetched: its host pauses for `robots_retry` (fleet-wide) and
    /// this request is retried after it, a bounded number of times.
    async fn robots_unreachable(&self, lease: &Lease) -> LeaseOutcome {
        let wait = self.config.robots_retry;
        tracing::info!(retries = lease.request.retries, wait = ?wait, "robots.txt unreachable, retrying later");
        self.report_domain(lease, DomainHint::RetryAfter(wait))
            .await;
        let retry = RetryRequest {
            not_before: Some(wait),
            status: None,
        };
        self.retry(lease, retry, LeaseOutcome::RobotsUnreachable)
            .await
    }

    /// Tells the frontier what was learnt about the lease's domain. A failure is logged and
    /// the lease goes on: the hint is an optimisation of politeness, not a condition of it.
    async fn report_domain(&self, lease: &Lease, hint: DomainHint) {
        if let Err(e) = self
            .frontier
            .report_domain(&self.config.spiderid, &lease.domain, hint)
            .await
        {
            tracing::warn!(error = %format_chain(&e), hint = ?hint, "reporting to the frontier failed");
        }
    }

    /// Acknowledges the lease; `done` names the outcome when the frontier counted it.
    async fn ack(&self, lease: &Lease, outcome: Outcome, done: LeaseOutcome) -> LeaseOutcome {
        let completion = match &self.acks {
            Some(acks) => acks.complete(lease, outcome).await,
            None => self
                .frontier
                .complete(lease, outcome)
                .await
                .map_err(|e| format_chain(&e)),
        };
        match completion {
            Ok(Completion::Acked(_)) => done,
            Ok(Completion::Parked) => LeaseOutcome::Parked,
            Ok(Completion::JobGone) => LeaseOutcome::JobGone,
            Ok(Completion::Stale) => LeaseOutcome::Stale,
            Err(e) => {
                tracing::warn!(error = %e, "acknowledging failed; the lease will expire");
                LeaseOutcome::AckFailed
            }
        }
    }

    /// Schedules a retry; `scheduled` names the outcome when it was scheduled.
    pub(super) async fn retry(
        &self,
        lease: &Lease,
        retry: RetryRequest,
        scheduled: LeaseOutcome,
    ) -> LeaseOutcome {
        match self.frontier.retry(lease, retry).await {
            Ok(RetryOutcome::Scheduled { .. }) => scheduled,
            Ok(RetryOutcome::GaveUp) => LeaseOutcome::GaveUp,
            Ok(RetryOutcome::JobGone) => LeaseOutcome::JobGone,
            Ok(RetryOutcome::Stale) => LeaseOutcome::Stale,
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "scheduling a retry failed; the lease will expire");
                LeaseOutcome::AckFailed
            }
        }
    }
}

/// The request a redirect not followed inline becomes (another host, or an origin whose
/// robots.txt is not known yet): its target at the same depth, referred by this page. The
/// frontier's filter, dedupe, robots.txt check and politeness then treat it like any request.
fn redirect_elsewhere(page: &Fetched, lease: &Lease) -> Option<CrawlRequest> {
    if !(300..400).contains(&page.status) {
        return None;
    }
    let target = page.final_url.join(page.header("location")?).ok()?;
    let same = target.host_str() == page.final_url.host_str()
        && target.port_or_known_default() == page.final_url.port_or_known_default()
        && target.scheme() == page.final_url.scheme();
    if same || !matches!(target.scheme(), "http" | "https") {
        return None;
    }
    let mut request = lease.request.child(target.to_string());
    request.depth = lease.request.depth;
    request.referer = Some(page.final_url.to_string());
    Some(request)
}

fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The message of a caught panic, as a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}

/// Turns a fetched page into what the spider sees: decoded text, extracted links, the
/// job's attrs. CPU work: in the lease's task, or on a blocking thread for a large body
/// (`Worker::parse_page`).
fn build_response(lease: &Lease, page: Fetched, job: &JobContext) -> (Response, Signals) {
    let content_type_header = page.header("content-type").map(str::to_owned);
    let content_type = charset::media_type(content_type_header.as_deref());
    let (text, encoding) = match charset::decode(&page.body, content_type_header.as_deref()) {
        Decoded::Text { text, encoding } => (Some(text), Some(encoding)),
        Decoded::Binary => (None, None),
    };
    let (links, signals) = match &text {
        Some(html) if charset::is_html(&content_type) => extract::scan(html, &page.final_url),
        _ => (Vec::new(), Signals::default()),
    };
    let response = Response {
        job: lease.job.clone(),
        request: lease.request.clone(),
        url: page.final_url,
        status: page.status,
        status_msg: page.status_msg,
        headers: page.headers,
        request_headers: page.request_headers,
        body: page.body,
        truncated: page.truncated,
        text,
        encoding,
        content_type,
        links,
        follow_nofollow: job.policy.follow_nofollow,
        attrs: job.attrs.clone(),
        redirect_chain: page.redirect_chain,
        fetch_time: page.elapsed,
        timestamp: SystemTime::now(),
        rules: job.rules.clone(),
        rendered: false,
        screenshot: None,
    };
    (response, signals)
}

/// Runs CPU work: in this task, or on a blocking thread when `big`, with the request's span
/// (so that whatever the work logs carries appid, crawlid, spiderid and url). `Err`: the work
/// panicked, with its message.
async fn cpu<T: Send + 'static>(
    big: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if big {
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            work()
        })
        .await
        .map_err(|e| e.to_string())
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|panic| panic_message(&*panic))
    }
}
