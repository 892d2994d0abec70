//! kubecrawl-api: the types that cross a process boundary in kubecrawl.
//!
//! This crate holds data and nothing else: no network, no files, no clocks. The operator, the
//! workers, the frontier and the command-line tools all depend on it, so that what one side
//! writes the other side reads with the same type.
//!
//! # Tour
//! - [`crawljob`]: the `CrawlJob` custom resource (`crawljobs.kubecrawl.io/v1alpha1`), its spec
//!   (Scrapy Cluster's crawl request in Kubernetes camelCase), its status and the validation the
//!   API server enforces. The `crdgen` binary prints its CustomResourceDefinition.
//! - [`extract`]: a CrawlJob's declarative spider: item fields by CSS selector, follow rules,
//!   pagination.
//! - [`render`]: a CrawlJob's rendering in headless Chromium: which pages, and the limits.
//! - [`contract`]: the names processes agree on — the worker's environment variables, Kafka
//!   topics, the worker Deployment's name, label and annotation keys.
//! - [`request`]: the request record the frontier queues and hands to workers.
//! - [`page`]: the page record a worker publishes to Kafka for every response, a superset of
//!   Scrapy Cluster's `RawResponseItem`.
//!
//! What this crate is not: it does not decide policy (the frontier does) or talk to the API
//! server (the operator does); it only says what the data looks like.

pub mod contract;
pub mod crawljob;
pub mod extract;
pub mod page;
pub mod render;
pub mod request;

pub use crawljob::{
    CrawlJob, CrawlJobSpec, CrawlJobStatus, Phase, Politeness, Recrawl, RecrawlStatus,
    SitemapStatus, Sitemaps,
};
pub use extract::{Extract, ExtractField, FollowRule};
pub use page::{BodyEncoding, Link, PageRecord};
pub use render::{Render, RenderMode};
pub use request::{CrawlRequest, JobRef, RECRAWL_META, SITEMAP_META, SitemapRole, Validators};
