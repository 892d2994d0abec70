//! A TCP fault proxy: one listener on 127.0.0.1 that forwards every connection to an upstream
//! address, and can be told at run time to misbehave the way real networks do.
//!
//! The chaos suite puts one in front of each service the workers talk to (Redis, the Kafka
//! broker) and switches its [`Mode`]:
//!
//! | mode | new connections | live connections |
//! |---|---|---|
//! | [`Mode::Pass`] | forwarded | forwarded |
//! | [`Mode::Drop`] | accepted, then closed with a reset at once | forwarded |
//! | [`Mode::Stall`] | accepted, never connected upstream: nothing moves | nothing is read or written, nothing is closed (half-open) |
//! | [`Mode::Reset`] | accepted, then closed with a reset at once | closed with a reset (`SO_LINGER` 0) on both sides, once, when the mode is entered |
//!
//! A stall holds the bytes already read in the proxy and stops reading, so the kernel
//! buffers fill and the peers see a connection that is open and silent, exactly like a path
//! whose packets vanish. Switching back to [`Mode::Pass`] delivers what was held, in order.
//!
//! A client of the proxy cannot tell it from the upstream while it passes: bytes are copied
//! both ways unchanged, a half-close is passed on, and when one side closes the other is
//! closed after what it had sent was delivered.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The most connections one proxy forwards at once; more are refused (reset). The chaos
/// suite's three workers hold a handful each.
const MAX_CONNECTIONS: usize = 1024;
/// Bytes read from one side before they are written to the other.
const BUFFER_BYTES: usize = 64 * 1024;

/// What the proxy does with connections (see the module documentation for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Reset new connections; keep forwarding live ones.
    Drop,
    /// Forward nothing and close nothing.
    Stall,
    /// Reset every live connection on entry, and every new one while the mode lasts.
    Reset,
}

impl Mode {
    /// The mode's name in lower case, as the chaos suite prints it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pass => "pass",
            Mode::Drop => "drop",
            Mode::Stall => "stall",
            Mode::Reset => "reset",
        }
    }
}

/// What every connection task watches: the mode, and how many times a reset was ordered (so
/// that a reset is never missed when the mode changes again before a task looks).
#[derive(Debug, Clone, Copy)]
struct Control {
    mode: Mode,
    resets: u64,
}

/// Counts of what the proxy did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections forwarded right now.
    pub live: u64,
    /// New connections refused (reset at once) in [`Mode::Drop`] or [`Mode::Reset`], or over
    /// the connection limit, or because the upstream refused them.
    pub refused: u64,
    /// Live connections closed by a reset.
    pub reset: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_up: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_down: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    live: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A running fault proxy. It stops, closing every connection, when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Binds 127.0.0.1 on a free port and forwards to `upstream`, in [`Mode::Pass`]. The
    /// upstream need not be up yet: a connection it refuses is reset.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (control, watched) = watch::channel(Control {
            mode: Mode::Pass,
            resets: 0,
        });
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            watched,
            Arc::clone(&counters),
        ));
        Ok(Self {
            addr,
            upstream,
            control,
            counters,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.control.borrow().mode
    }

    /// Switches the mode; takes effect on every connection at once. Entering [`Mode::Reset`]
    /// resets every live connection.
    pub fn set_mode(&self, mode: Mode) {
        self.control.send_modify(|c| {
            if mode == Mode::Reset {
                c.resets += 1;
            }
            c.mode = mode;
        });
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            live: c.live.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the connection tasks (a JoinSet): aborting it aborts them all.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    control: watch::Receiver<Control>,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next() => continue,
        };
        let Ok((client, _)) = accepted else {
            // Out of file descriptors and the like: wait a little rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let mode = control.borrow().mode;
        let slot = Arc::clone(&slots).try_acquire_owned();
        let (true, Ok(slot)) = (matches!(mode, Mode::Pass | Mode::Stall), slot) else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            continue;
        };
        let control = control.clone();
        let counters = Arc::clone(&counters);
        connections.spawn(async move {
            counters.live.fetch_add(1, Ordering::Relaxed);
            forward(client, upstream, control, &counters).await;
            counters.live.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Closes a socket with a reset rather than a FIN: `SO_LINGER` 0, then drop.
fn reset(stream: &TcpStream) {
    // A socket that is already broken resets or closes anyway.
    let _ = stream.set_zero_linger();
}

/// Forwards one connection until either side closes it, or a reset is ordered.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut control: watch::Receiver<Control>,
    counters: &Counters,
) {
    let resets = control.borrow_and_update().resets;
    let mut watcher = control.clone();
    let reset_ordered = async move {
        // An error means the proxy is gone; then the task is aborted anyway.
        let _ = watcher.wait_for(|c| c.resets != resets).await;
    };
    tokio::pin!(reset_ordered);

    // A connection accepted during a stall is not connected upstream until the stall ends.
    let connect = async {
        wait_unstalled(&mut control).await;
        TcpStream::connect(upstream).await
    };
    let mut server = tokio::select! {
        server = connect => match server {
            Ok(server) => server,
            Err(_) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                reset(&client);
                return;
            }
        },
        () = &mut reset_ordered => {
            counters.reset.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(
            client_read,
            server_write,
            control.clone(),
            &counters.bytes_up,
        );
        let down = pump(server_read, client_write, control, &counters.bytes_down);
        let both = async { tokio::join!(up, down) };
        tokio::select! {
            _ = both => return,
            () = &mut reset_ordered => {}
        }
    }
    counters.reset.fetch_add(1, Ordering::Relaxed);
    reset(&client);
    reset(&server);
}

/// Waits while the mode is [`Mode::Stall`].
async fn wait_unstalled(control: &mut watch::Receiver<Control>) {
    // An error means the proxy is gone; then the task is aborted anyway.
    let _ = control.wait_for(|c| c.mode != Mode::Stall).await;
}

/// Copies `from` to `to` until `from` ends (then half-closes `to`) or either fails, holding
/// still while the proxy stalls. Counts the bytes written into `bytes`.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    mut control: watch::Receiver<Control>,
    bytes: &AtomicU64,
) {
    let mut buffer = vec![0u8; BUFFER_BYTES];
    loop {
        wait_unstalled(&mut control).await;
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just as a stall began are held until it ends.
        wait_unstalled(&mut control).await;
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// How long any step of these tests may take before it counts as hung.
    const STEP: Duration = Duration::from_secs(10);
    /// How long a test waits to see that nothing arrives.
    const QUIET: Duration = Duration::from_millis(300);

    /// An upstream that echoes every byte back, on 127.0.0.1.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("has an address");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Writes `msg` and reads the same number of bytes back.
    async fn round_trip(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        conn.write_all(msg).await?;
        let mut back = vec![0u8; msg.len()];
        conn.read_exact(&mut back).await?;
        Ok(back)
    }

    async fn connect(proxy: &FaultProxy) -> TcpStream {
        tokio::time::timeout(STEP, TcpStream::connect(proxy.addr()))
            .await
            .expect("connect hung")
            .expect("the proxy accepts")
    }

    /// Connects and sends a byte: true when the proxy refused the connection (the connect,
    /// the write or the read failed; a reset may beat the end of the handshake).
    async fn refused(proxy: &FaultProxy) -> bool {
        let attempt = async {
            let mut conn = TcpStream::connect(proxy.addr()).await?;
            round_trip(&mut conn, b"x").await
        };
        tokio::time::timeout(STEP, attempt)
            .await
            .expect("a connection to the proxy hung")
            .is_err()
    }

    /// True when `conn` ends (EOF or error) within [`STEP`]; the error kind if any.
    async fn closed(conn: &mut TcpStream) -> Option<std::io::ErrorKind> {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(STEP, conn.read(&mut byte))
            .await
            .expect("the connection was never closed")
        {
            Ok(0) => None,
            Ok(_) => panic!("a byte arrived on a connection that should be closed"),
            Err(e) => Some(e.kind()),
        }
    }

    #[tokio::test]
    async fn pass_forwards_both_ways_and_counts_bytes() {
        let proxy = FaultProxy::start(echo_server().await)
            .await
            .expect("starts");
        let mut conn = connect(&proxy).await;
        let big = vec![7u8; 300_000];
        let back = tokio::time::timeout(STEP, round_trip(&mut conn, &big))
            .await
            .expect("echo through the proxy hung")
            .expect("echoes");
        assert_eq!(back, big);
        let stats = proxy.stats();
        assert_eq!((stats.accepted, stats.live), (1, 1), "{stats:?}");
        assert_eq!(
            (stats.bytes_up, stats.bytes_down),
            (300_000, 300_000),
            "{stats:?}"
        );
        assert_eq!(proxy.mode(), Mode::Pass);
    }

    #[tokio::test]
    async fn a_half_close_is_passed_on() {
        let proxy = FaultProxy::start(echo_server().await)
            .await
            .expect("starts");
        let mut conn = connect(&proxy).await;
        conn.write_all(b"bye").await.expect("writes");
        conn.shutdown().await.expect("half-closes");
        let mut back = Vec::new();
        tokio::time::timeout(STEP, conn.read_to_end(&mut back))
            .await
            .expect("the echo never closed its side")
            .expect("reads to the end");
        assert_eq!(back, b"bye", "the echo saw EOF and closed after echoing");
    }

    #[tokio::test]
    async fn drop_refuses_new_connections_and_keeps_live_ones() {
        let proxy = FaultProxy::start(echo_server().await)
            .await
            .expect("starts");
        let mut live = connect(&proxy).await;
        // Forwarded, not just queued in the listener's backlog.
        assert_eq!(round_trip(&mut live, b"up").await.expect("echoes"), b"up");
        proxy.set_mode(Mode::Drop);
        assert!(refused(&proxy).await, "a new connection got through");
        let back = tokio::time::timeout(STEP, round_trip(&mut live, b"still"))
            .await
            .expect("the live connection hung")
            .expect("the live connection still works");
        assert_eq!(back, b"still");

        proxy.set_mode(Mode::Pass);
        let mut again = connect(&proxy).await;
        let back = tokio::time::timeout(STEP, round_trip(&mut again, b"back"))
            .await
            .expect("hung after drop ended")
            .expect("new connections work again");
        assert_eq!(back, b"back");
        assert_eq!(proxy.stats().refused, 1, "{:?}", proxy.stats());
    }

    #[tokio::test]
    async fn stall_holds_bytes_without_closing_then_delivers_them_in_order() {
        let proxy = FaultProxy::start(echo_server().await)
            .await
            .expect("starts");
        let mut live = connect(&proxy).await;
        assert_eq!(
            round_trip(&mut live, b"warm").await.expect("echoes"),
            b"warm"
        );
        proxy.set_mode(Mode::Stall);
        // Let the pumps see the stall before anything is sent.
        tokio::time::sleep(Duration::from_millis(50)).await;
        live.write_all(b"held")
            .await
            .expect("writes into the stall");
        let mut newcomer = connect(&proxy).await;
        newcomer
            .write_all(b"late")
            .await
            .expect("writes into the stall");

        let mut byte = [0u8; 4];
        let quiet = tokio::time::timeout(QUIET, live.read(&mut byte)).await;
        assert!(
            quiet.is_err(),
            "the stalled connection answered or closed: {quiet:?}"
        );
        let quiet = tokio::time::timeout(QUIET, newcomer.read(&mut byte)).await;
        assert!(
            quiet.is_err(),
            "the connection accepted during the stall answered or closed: {quiet:?}"
        );
        assert_eq!(proxy.stats().reset + proxy.stats().refused, 0);

        proxy.set_mode(Mode::Pass);
        for (conn, want) in [(&mut live, b"held"), (&mut newcomer, b"late")] {
            let mut back = [0u8; 4];
            tokio::time::timeout(STEP, conn.read_exact(&mut back))
                .await
                .expect("held bytes were never delivered")
                .expect("reads");
            assert_eq!(&back, want);
        }
    }

    #[tokio::test]
    async fn reset_closes_live_connections_with_rst_and_refuses_new_ones() {
        let proxy = FaultProxy::start(echo_server().await)
            .await
            .expect("starts");
        let mut first = connect(&proxy).await;
        let mut second = connect(&proxy).await;
        for conn in [&mut first, &mut second] {
            assert_eq!(round_trip(conn, b"up").await.expect("echoes"), b"up");
        }
        proxy.set_mode(Mode::Reset);
        for conn in [&mut first, &mut second] {
            assert_eq!(
                closed(conn).await,
                Some(std::io::ErrorKind::ConnectionReset),
                "closed with RST, not FIN"
            );
        }
        assert!(refused(&proxy).await, "a new connection got through");
        let stats = proxy.stats();
        assert_eq!((stats.reset, stats.refused), (2, 1), "{stats:?}");

        proxy.set_mode(Mode::Pass);
        let mut after = connect(&proxy).await;
        assert_eq!(
            tokio::time::timeout(STEP, round_trip(&mut after, b"ok"))
                .await
                .expect("hung after the reset")
                .expect("new connections work again"),
            b"ok"
        );
    }

    #[tokio::test]
    async fn a_reset_is_not_missed_when_pass_follows_at_once() {
        let proxy = FaultProxy::start(echo_server().await)
            .await
            .expect("starts");
        let mut conn = connect(&proxy).await;
        assert_eq!(round_trip(&mut conn, b"a").await.expect("echoes"), b"a");
        proxy.set_mode(Mode::Reset);
        proxy.set_mode(Mode::Pass);
        assert_eq!(
            closed(&mut conn).await,
            Some(std::io::ErrorKind::ConnectionReset)
        );
    }

    #[tokio::test]
    async fn a_reset_during_a_stall_closes_the_stalled_connection() {
        let proxy = FaultProxy::start(echo_server().await)
            .await
            .expect("starts");
        let mut conn = connect(&proxy).await;
        assert_eq!(round_trip(&mut conn, b"a").await.expect("echoes"), b"a");
        proxy.set_mode(Mode::Stall);
        conn.write_all(b"lost")
            .await
            .expect("writes into the stall");
        proxy.set_mode(Mode::Reset);
        assert_eq!(
            closed(&mut conn).await,
            Some(std::io::ErrorKind::ConnectionReset)
        );
    }

    #[tokio::test]
    async fn an_upstream_that_is_down_gets_the_client_reset() {
        // A port that was free a moment ago: nothing listens there.
        let free = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binds")
            .local_addr()
            .expect("has an address");
        let proxy = FaultProxy::start(free).await.expect("starts");
        assert!(refused(&proxy).await, "nothing to forward to");
        assert_eq!(proxy.stats().refused, 1, "{:?}", proxy.stats());
        assert_eq!(proxy.upstream(), free);
    }
}
