//! A sorted set of members by score, like a Redis sorted set (ties broken by member).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Members ordered by `(score, member)`, each present once.
#[derive(Debug, Clone)]
pub(crate) struct ZSet<T: Ord + Hash + Clone> {
    order: BTreeSet<(u64, T)>,
    scores: HashMap<T, u64>,
}

impl<T: Ord + Hash + Clone> Default for ZSet<T> {
    fn default() -> Self {
        Self {
            order: BTreeSet::new(),
            scores: HashMap::new(),
        }
    }
}

impl<T: Ord + Hash + Clone> ZSet<T> {
    /// Adds or re-scores a member.
    pub(crate) fn add(&mut self, member: T, score: u64) {
        if let Some(old) = self.scores.insert(member.clone(), score) {
            self.order.remove(&(old, member.clone()));
        }
        self.order.insert((score, member));
    }

    /// Adds a member, or lowers its score (`ZADD LT`).
    pub(crate) fn add_lt(&mut self, member: T, score: u64) {
        match self.scores.get(&member) {
            Some(old) if *old <= score => {}
            _ => self.add(member, score),
        }
    }

    pub(crate) fn remove(&mut self, member: &T) -> bool {
        match self.scores.remove(member) {
            Some(old) => {
                self.order.remove(&(old, member.clone()));
                true
            }
            None => false,
        }
    }

    pub(crate) fn score(&self, member: &T) -> Option<u64> {
        self.scores.get(member).copied()
    }

    pub(crate) fn contains(&self, member: &T) -> bool {
        self.scores.contains_key(member)
    }

    pub(crate) fn first(&self) -> Option<(u64, &T)> {
        self.order.first().map(|(s, m)| (*s, m))
    }

    /// Up to `limit` members with score <= `max`, lowest first.
    pub(crate) fn up_to(&self, max: u64, limit: usize) -> Vec<T> {
        self.order
            .iter()
            .take_while(|(s, _)| *s <= max)
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Every member, in no particular order.
    pub(crate) fn members(&self) -> impl Iterator<Item = &T> {
        self.scores.keys()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_redis_sorted_set() {
        let mut z = ZSet::default();
        z.add("b", 2);
        z.add("a", 2);
        z.add("c", 1);
        assert_eq!(z.first(), Some((1, &"c")));
        z.add_lt("c", 5);
        assert_eq!(z.score(&"c"), Some(1));
        z.add_lt("c", 0);
        assert_eq!(z.score(&"c"), Some(0));
        assert_eq!(z.up_to(2, 10), vec!["c", "a", "b"]);
        assert!(z.remove(&"a"));
        assert!(!z.remove(&"a"));
        assert_eq!(z.up_to(2, 1), vec!["c"]);
    }
}
