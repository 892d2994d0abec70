//! The WARC stage of a lease: the page's request, response and metadata records, written
//! after the spider parsed the page and before its items are published ([`crate::warc`]).

use std::time::{Instant, SystemTime};

use kubecrawl_api::PageRecord;
use kubecrawl_frontier::Lease;

use super::{LeaseOutcome, SINK_PAUSE, Worker, format_chain, lock};
use crate::fetch::Fetched;
use crate::warc::Exchange;

impl Worker {
    /// What the page's WARC records need, taken before the spider gets the page (the body is
    /// shared, not copied): the response as sent, its body still in its content coding.
    /// `None` without WARC output.
    pub(super) fn capture(&self, lease: &Lease, page: &Fetched) -> Option<Exchange> {
        self.warc.as_ref()?;
        let mut metadata = vec![
            ("appid".to_owned(), lease.job.appid.clone()),
            ("crawlid".to_owned(), lease.job.crawlid.clone()),
            ("spiderid".to_owned(), lease.job.spiderid.clone()),
            ("depth".to_owned(), lease.request.depth.to_string()),
        ];
        if let Some(referer) = &lease.request.referer {
            metadata.push(("via".to_owned(), referer.clone()));
        }
        metadata.push((
            "fetchTimeMs".to_owned(),
            page.elapsed.as_millis().to_string(),
        ));
        for hop in &page.redirect_chain {
            metadata.push(("redirect".to_owned(), hop.clone()));
        }
        let (response_headers, body, truncated) = match &page.encoded {
            Some(encoded) => {
                let mut headers = page.headers.clone();
                headers.extend(encoded.headers.clone());
                (headers, encoded.body.clone(), encoded.truncated)
            }
            None => (page.headers.clone(), page.body.clone(), page.truncated),
        };
        Some(Exchange {
            url: page.final_url.clone(),
            fetched_at: SystemTime::now(),
            ip: page.remote_addr.map(|a| a.ip()),
            http_version: http_version(page.version),
            request_headers: page.request_headers.clone(),
            status: page.status,
            reason: page.status_msg.clone(),
            response_headers,
            body,
            truncated,
            metadata,
        })
    }

    /// Writes the page's records (`exchange`, from [`Self::capture`]; nothing without WARC
    /// output). If they cannot be written the lease is given back and leasing pauses, as when
    /// the sink cannot publish: the page is fetched again later, never acknowledged without
    /// its records.
    pub(super) async fn archive(
        &self,
        lease: &Lease,
        exchange: Option<Exchange>,
        items: &[PageRecord],
    ) -> Result<(), LeaseOutcome> {
        let (Some(warc), Some(mut exchange)) = (&self.warc, exchange) else {
            return Ok(());
        };
        let outlinks = items.iter().map(|i| i.links.len()).max().unwrap_or(0);
        exchange
            .metadata
            .push(("outlinks".to_owned(), outlinks.to_string()));
        let Err(e) = warc.write(exchange).await else {
            return Ok(());
        };
        self.metrics.warc_error("write");
        tracing::error!(error = %format_chain(&e), "writing the page's warc records failed, giving the lease back");
        *lock(&self.sink_pause) = Some(Instant::now() + SINK_PAUSE);
        self.give_back(lease).await;
        Err(LeaseOutcome::WarcFailed)
    }
}

/// The version as a status line starts with it.
fn http_version(version: reqwest::Version) -> &'static str {
    match version {
        reqwest::Version::HTTP_09 => "HTTP/0.9",
        reqwest::Version::HTTP_10 => "HTTP/1.0",
        reqwest::Version::HTTP_2 => "HTTP/2",
        reqwest::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}
