//! Adaptive politeness: how fast a host wants to be crawled, learnt from how it answers.
//!
//! Per host, the worker keeps a delay that the frontier adds to the host's other intervals
//! (the job's delay, robots.txt's Crawl-delay, a throttle: the largest wins, so the adaptive
//! delay never lets a host be crawled faster than those allow). The rule:
//!
//! - **Overloaded** (a 429 or 503, a refused or reset connection, a timeout): a host with no
//!   delay gets [`FIRST_STEP`] (250 ms); one that has a delay gets it doubled, up to
//!   [`MAX_DELAY`] (60 s). Answers to requests that were in flight together are one event:
//!   after a raise, the delay is raised again only once it has passed.
//! - **Slower than usual**: when the host's smoothed response time (an average over about its
//!   last twenty answers) is more than [`SLOW_FACTOR`] (3) times the best it has shown and
//!   above [`SLOW_FLOOR`] (250 ms), the delay rises to that response time.
//! - **Answering well** (anything else): the delay shrinks by a quarter ([`RELAX`]); under
//!   [`CLEAR_BELOW`] (10 ms) it is cleared. From 250 ms that takes twelve answers, about a
//!   second; from 2 s, nineteen answers, about eight seconds.
//!
//! Doubling on trouble and shrinking by a quarter on success settles a host that refuses
//! beyond some rate just under that rate, with a refusal now and then.
//!
//! A change is reported to the frontier ([`DomainHint::Adaptive`], which every worker of the
//! spider obeys) when the delay grows, is cleared, or has relaxed to half of what was last
//! reported, so a host answering well costs no frontier call per page. A Retry-After is
//! reported on its own as before ([`DomainHint::RetryAfter`]).
//!
//! [`DomainHint::Adaptive`]: kubecrawl_frontier::DomainHint::Adaptive
//! [`DomainHint::RetryAfter`]: kubecrawl_frontier::DomainHint::RetryAfter

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first delay an overloaded host gets.
pub const FIRST_STEP: Duration = Duration::from_millis(250);
/// The longest adaptive delay.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A response time this many times the host's best counts as slow...
pub const SLOW_FACTOR: f64 = 3.0;
/// ...when it is also above this.
pub const SLOW_FLOOR: Duration = Duration::from_millis(250);
/// What a good answer leaves of the delay.
pub const RELAX: f64 = 0.75;
/// A delay relaxed below this is cleared.
pub const CLEAR_BELOW: Duration = Duration::from_millis(10);
/// Hosts remembered; past this, those with no delay are forgotten first.
const MAX_HOSTS: usize = 10_000;
/// The weight of the newest answer in the smoothed response time: one slow answer among
/// fast ones does not make the host slow.
const SMOOTHING: f64 = 0.1;

/// How a host answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A response that is not a sign of overload, and how long it took.
    Answered(Duration),
    /// 429, 503, a refused or reset connection, a timeout.
    Overloaded,
}

#[derive(Debug, Default, Clone, Copy)]
struct Host {
    /// The current delay, seconds.
    delay: f64,
    /// The delay last reported to the frontier, seconds.
    reported: f64,
    /// Smoothed response time, seconds (0: none yet).
    latency: f64,
    /// The best smoothed response time seen, seconds.
    best: f64,
    /// The largest delay this host had.
    peak: f64,
    /// When the delay was last raised for an overload.
    raised_at: Option<Instant>,
}

/// The adaptive delays of the hosts a worker fetches from.
#[derive(Debug, Default)]
pub struct AdaptiveDelays {
    hosts: Mutex<HashMap<String, Host>>,
}

impl AdaptiveDelays {
    /// No host slowed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an answer of `host`. Returns the delay to report to the frontier when it
    /// changed enough to tell (zero: cleared).
    pub fn observe(&self, host: &str, answer: Answer) -> Option<Duration> {
        self.observe_at(host, answer, Instant::now())
    }

    /// [`Self::observe`], at `now`.
    fn observe_at(&self, host: &str, answer: Answer, now: Instant) -> Option<Duration> {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hosts.len() >= MAX_HOSTS && !hosts.contains_key(host) {
            hosts.retain(|_, h| h.delay > 0.0);
            if hosts.len() >= MAX_HOSTS {
                hosts.clear();
            }
        }
        let h = hosts.entry(host.to_owned()).or_default();
        match answer {
            Answer::Overloaded => {
                if h.delay == 0.0 {
                    h.delay = FIRST_STEP.as_secs_f64();
                    h.raised_at = Some(now);
                } else if h
                    .raised_at
                    .is_none_or(|at| now.saturating_duration_since(at).as_secs_f64() >= h.delay)
                {
                    h.delay = (h.delay * 2.0).min(MAX_DELAY.as_secs_f64());
                    h.raised_at = Some(now);
                }
            }
            Answer::Answered(took) => {
                let took = took.as_secs_f64();
                h.latency = if h.latency == 0.0 {
                    took
                } else {
                    h.latency + SMOOTHING * (took - h.latency)
                };
                h.best = if h.best == 0.0 {
                    h.latency
                } else {
                    h.best.min(h.latency)
                };
                let slow = h.latency > SLOW_FACTOR * h.best && h.latency > SLOW_FLOOR.as_secs_f64();
                if slow {
                    h.delay = h.delay.max(h.latency.min(MAX_DELAY.as_secs_f64()));
                } else {
                    h.delay *= RELAX;
                    if h.delay < CLEAR_BELOW.as_secs_f64() {
                        h.delay = 0.0;
                    }
                }
            }
        }
        h.peak = h.peak.max(h.delay);
        // Told: a raise, a clear, or a relax to half of what was last told.
        let unchanged = h.delay == h.reported;
        let small_relax = h.delay < h.reported && h.delay > h.reported / 2.0;
        if unchanged || small_relax {
            return None;
        }
        h.reported = h.delay;
        Some(Duration::from_secs_f64(h.delay))
    }

    /// The hosts that have a delay now, and their delays.
    pub fn slowed(&self) -> Vec<(String, Duration)> {
        self.listed(|h| h.delay)
    }

    /// The largest delay each host that was ever slowed had.
    pub fn peaks(&self) -> Vec<(String, Duration)> {
        self.listed(|h| h.peak)
    }

    /// The hosts whose `value` (seconds) is not zero, with it, by name.
    fn listed(&self, value: fn(&Host) -> f64) -> Vec<(String, Duration)> {
        let hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut listed: Vec<(String, Duration)> = hosts
            .iter()
            .filter(|(_, h)| value(h) > 0.0)
            .map(|(name, h)| (name.clone(), Duration::from_secs_f64(value(h))))
            .collect();
        listed.sort();
        listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `n` overloads of `h`, each once the delay it raised has passed.
    fn overloads(a: &AdaptiveDelays, n: usize) -> Vec<Option<Duration>> {
        let mut now = Instant::now();
        (0..n)
            .map(|_| {
                let told = a.observe_at("h", Answer::Overloaded, now);
                now += MAX_DELAY;
                told
            })
            .collect()
    }

    #[test]
    fn overload_doubles_from_the_first_step_up_to_the_cap() {
        let a = AdaptiveDelays::new();
        assert_eq!(
            overloads(&a, 3),
            vec![Some(ms(250)), Some(ms(500)), Some(ms(1000))]
        );
        overloads(&a, 20);
        assert_eq!(a.slowed(), vec![("h".to_owned(), MAX_DELAY)]);
    }

    #[test]
    fn refusals_of_requests_in_flight_together_raise_the_delay_once() {
        let a = AdaptiveDelays::new();
        let now = Instant::now();
        let told: Vec<_> = (0..16)
            .map(|i| a.observe_at("h", Answer::Overloaded, now + ms(i)))
            .collect();
        assert_eq!(told[0], Some(ms(250)));
        assert!(told[1..].iter().all(Option::is_none), "{told:?}");
        // Once the delay has passed, a refusal doubles it.
        assert_eq!(
            a.observe_at("h", Answer::Overloaded, now + ms(300)),
            Some(ms(500))
        );
    }

    #[test]
    fn good_answers_relax_to_nothing_and_report_only_big_steps() {
        let a = AdaptiveDelays::new();
        overloads(&a, 3);
        let mut reports = vec![ms(1000)];
        let mut answers = 0;
        while !a.slowed().is_empty() {
            answers += 1;
            assert!(answers < 100, "the delay never cleared: {:?}", a.slowed());
            if let Some(d) = a.observe("h", Answer::Answered(ms(5))) {
                reports.push(d);
            }
        }
        // 1 s shrinks by a quarter per good answer: cleared after 17 answers (below 10 ms),
        // reported only when it halved since the last report, and when cleared.
        assert_eq!(answers, 17);
        assert_eq!(reports.last(), Some(&Duration::ZERO));
        for pair in reports.windows(2) {
            assert!(pair[1] <= pair[0] / 2, "{reports:?}");
        }
        assert!(reports.len() <= 9, "too many reports: {reports:?}");
        assert_eq!(a.peaks(), vec![("h".to_owned(), ms(1000))]);
        // Answering well with no delay reports nothing.
        assert_eq!(a.observe("h", Answer::Answered(ms(5))), None);
        // Trouble again after a partial relax doubles what is left.
        let now = Instant::now();
        a.observe_at("h", Answer::Overloaded, now);
        a.observe_at("h", Answer::Answered(ms(5)), now + ms(250));
        assert_eq!(
            a.observe_at("h", Answer::Overloaded, now + ms(500)),
            Some(ms(375))
        );
    }

    #[test]
    fn a_host_slowing_down_gets_its_response_time_as_delay() {
        let a = AdaptiveDelays::new();
        for _ in 0..5 {
            assert_eq!(a.observe("h", Answer::Answered(ms(50))), None);
        }
        // Answers ten times slower: once the smoothed time passes 3× the best and 250 ms,
        // the delay follows it.
        let reported: Vec<Duration> = (0..10)
            .filter_map(|_| a.observe("h", Answer::Answered(ms(500))))
            .collect();
        assert!(!reported.is_empty(), "a slow host was not slowed");
        assert!(
            reported.iter().all(|d| *d > SLOW_FLOOR && *d <= ms(500)),
            "{reported:?}"
        );
        // A fast host that is merely a little slower is left alone.
        let b = AdaptiveDelays::new();
        for took in [10, 12, 20, 25, 15] {
            assert_eq!(b.observe("f", Answer::Answered(ms(took))), None);
        }
    }

    #[test]
    fn hosts_are_independent() {
        let a = AdaptiveDelays::new();
        a.observe("slow.test", Answer::Overloaded);
        assert_eq!(a.observe("fast.test", Answer::Answered(ms(5))), None);
        assert_eq!(a.slowed(), vec![("slow.test".to_owned(), ms(250))]);
    }
}
