//! kubecrawl-frontier: the distributed crawl frontier (queues, leases, politeness, dedupe and
//! per-job accounting) on Redis, and an in-memory twin with the same semantics.
//!
//! This crate is being built under its own issue; until then it only reserves its place in the
//! dependency graph (api <- frontier <- {operator, worker}).
