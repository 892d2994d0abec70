//! The built-in spiders.

pub mod link;
pub mod wandering;
