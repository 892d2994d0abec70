//! The Lua scripts, assembled once: a generated header of constants shared with the Rust
//! side, the common functions, then each operation's body.

use redis::Script;

use crate::schedule::{PRIORITY_MAX, SEQ_SPAN};
use crate::stats::{GRANULARITIES, bucket_ttl};

/// Average fingerprints per dedupe bucket before the next bucket splits. The fullest buckets
/// hold about twice this, which stays under Redis's default `hash-max-listpack-entries` (128)
/// so every bucket keeps the compact listpack encoding.
pub(crate) const DEDUPE_LOAD: u32 = 40;

const COMMON: &str = include_str!("lua/common.lua");

/// Every script of the frontier.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) lease: Script,
    pub(crate) complete: Script,
    pub(crate) retry: Script,
    pub(crate) release: Script,
    pub(crate) extend: Script,
    pub(crate) register: Script,
    pub(crate) enqueue: Script,
    pub(crate) budget: Script,
    pub(crate) cutoff: Script,
    pub(crate) suspend: Script,
    pub(crate) purge: Script,
    pub(crate) rotate_known: Script,
    pub(crate) stats: Script,
    pub(crate) spider_stats: Script,
    pub(crate) domain: Script,
    pub(crate) rules: Script,
    pub(crate) backlog: Script,
    pub(crate) job_backlog: Script,
    pub(crate) heartbeat: Script,
    pub(crate) live: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{}{COMMON}\n{body}", header()));
        Self {
            lease: with_common(include_str!("lua/lease.lua")),
            complete: with_common(include_str!("lua/complete.lua")),
            retry: with_common(include_str!("lua/retry.lua")),
            release: with_common(include_str!("lua/release.lua")),
            extend: with_common(include_str!("lua/extend.lua")),
            register: with_common(include_str!("lua/register.lua")),
            enqueue: with_common(include_str!("lua/enqueue.lua")),
            budget: Script::new(include_str!("lua/budget.lua")),
            cutoff: with_common(include_str!("lua/cutoff.lua")),
            suspend: with_common(include_str!("lua/suspend.lua")),
            purge: with_common(include_str!("lua/purge.lua")),
            rotate_known: Script::new(include_str!("lua/rotate_known.lua")),
            stats: with_common(include_str!("lua/stats.lua")),
            spider_stats: with_common(include_str!("lua/spider_stats.lua")),
            domain: with_common(include_str!("lua/domain.lua")),
            rules: with_common(include_str!("lua/rules.lua")),
            backlog: with_common(include_str!("lua/backlog.lua")),
            job_backlog: with_common(include_str!("lua/job_backlog.lua")),
            heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
            live: Script::new(include_str!("lua/live.lua")),
        }
    }
}

/// Constants the scripts share with Rust, so that one definition rules both.
fn header() -> String {
    let grans: Vec<String> = GRANULARITIES
        .iter()
        .map(|(g, _)| format!("{{{g}, {}}}", bucket_ttl(*g)))
        .collect();
    format!(
        "local PRIO_MAX = {PRIORITY_MAX}\nlocal SEQ_SPAN = {SEQ_SPAN}\n\
         local DEDUPE_LOAD = {DEDUPE_LOAD}\nlocal GRANS = {{{}}}\n",
        grans.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_defines_what_the_common_code_uses() {
        let h = header();
        assert!(h.contains("local PRIO_MAX = 2000"), "{h}");
        assert!(h.contains("{10, 920}"), "{h}");
        for name in ["PRIO_MAX", "SEQ_SPAN", "DEDUPE_LOAD", "GRANS"] {
            assert!(COMMON.contains(name), "common.lua no longer uses {name}");
        }
    }

    #[test]
    fn scripts_never_scan_the_keyspace() {
        for text in [
            COMMON,
            include_str!("lua/lease.lua"),
            include_str!("lua/purge.lua"),
            include_str!("lua/rotate_known.lua"),
            include_str!("lua/backlog.lua"),
            include_str!("lua/rules.lua"),
        ] {
            for banned in ["'KEYS'", "'SCAN'", "'FLUSHDB'"] {
                assert!(!text.contains(banned), "a script uses {banned}");
            }
        }
    }
}
