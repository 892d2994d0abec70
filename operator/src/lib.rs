//! kubecrawl-operator: the controller that reconciles CrawlJobs into seeds, worker
//! Deployments and status.
//!
//! This crate is being built under its own issue; the CrawlJob resource it reconciles is
//! defined in `kubecrawl-api`.
