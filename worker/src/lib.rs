//! kubecrawl-worker: the crawler worker (fetcher, spiders, link extraction, Kafka output).
//!
//! This crate is being built under its own issue; the records it publishes are defined in
//! `kubecrawl-api`.
