//! The Redis keys a test leaves under its own prefix, and deleting them. Tests may SCAN; the
//! frontier never does.

use anyhow::{Context, Result};

/// Deletes every key under `prefix:` (SCAN with MATCH, then DEL per batch); returns how many
/// were deleted.
///
/// # Errors
/// When Redis cannot be reached or a command fails.
pub async fn delete_prefixed(client: &redis::Client, prefix: &str) -> Result<usize> {
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to redis")?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .context("scanning the test's keys")?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .context("deleting the test's keys")?;
            deleted += keys.len();
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// [`delete_prefixed`] for a plain `redis_url`, from synchronous code (a `Drop`): it runs
/// on a thread and runtime of its own, so it works inside or outside an async runtime.
///
/// # Errors
/// As [`delete_prefixed`], or when the thread cannot run.
pub fn delete_prefixed_blocking(redis_url: &str, prefix: &str) -> Result<usize> {
    let (url, prefix) = (redis_url.to_owned(), prefix.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("a runtime for the clean-up")?;
        let client = redis::Client::open(url.as_str()).context("a redis url")?;
        runtime.block_on(delete_prefixed(&client, &prefix))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the clean-up thread panicked"))?
}
