//! `kubecrawl-worker` with the built-in spiders (`link`, `wandering`).

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: every page allocates and frees many buffers of a few
/// bytes to tens of kilobytes, which glibc's allocator spent about a sixth of a crawl's CPU on
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    kubecrawl_worker::main(kubecrawl_worker::spider::Registry::builtin())
}
