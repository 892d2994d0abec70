//! Scrapy Cluster's "Crawler Stats Dump", logged every interval.
//!
//! The keys are Scrapy Cluster's: `total_spider_count`, `unique_spider_count`,
//! `<spider>_spider_count`, and `<spider>_<status>_<window>` for windows 900, 3600, 21600,
//! 43200, 86400, 604800 and `lifetime`. They come from the frontier's bounded rolling counts
//! and worker heartbeats.

use std::sync::Arc;
use std::time::Duration;

use kubecrawl_frontier::Frontier;
use tokio_util::sync::CancellationToken;

/// Logs the dump every `interval` until `shutdown`, for every spider with live workers plus
/// the configured fleets.
pub async fn run(
    frontier: Arc<dyn Frontier>,
    fleets: Vec<String>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let names: Vec<&str> = fleets.iter().map(String::as_str).collect();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {},
            () = shutdown.cancelled() => return,
        }
        match frontier.stats_dump(&names).await {
            Ok(dump) => {
                let json = serde_json::to_string(&dump).unwrap_or_default();
                tracing::info!(dump = %json, "crawler stats dump");
            }
            Err(e) => {
                tracing::warn!(error = %kubecrawl_process::format_chain(&e), "crawler stats dump failed")
            }
        }
    }
}
