//! A loopback TCP proxy that injects the faults real networks produce into the connections it
//! carries: a clean cut (FIN), a reset (RST) at once or in the middle of a packet, a silent link
//! (bytes accepted, nothing delivered, no FIN or RST), latency with jitter, a slow reader.
//!
//! Where a fault needs a random choice (where in a chunk a cut falls, how long a delay is), it
//! comes from the proxy's seed, so that a failing run can be replayed with the same seed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// Forwards every connection made to [`Proxy::addr`] to the target, with the faults it is told
/// to inject.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// New connections are accepted (otherwise closed at once).
    open: AtomicBool,
    /// New connections are black holes (see [`Proxy::black_hole`]).
    silent: AtomicBool,
    /// The next chunk of any connection is cut short, then the connection reset.
    cut_next: AtomicBool,
    stopped: AtomicBool,
    links: Mutex<Vec<Weak<Link>>>,
    shaping: Mutex<Shaping>,
    random: Mutex<SplitMix>,
    /// Faults injected, by kind: resets, mid-packet cuts, silences.
    resets: AtomicU64,
    mid_packet_cuts: AtomicU64,
}

/// Delays and rate limits, applied to every chunk.
#[derive(Debug, Clone, Copy, Default)]
struct Shaping {
    latency: Duration,
    jitter: Duration,
    /// Bytes a second from the broker to the client; `None`: as fast as they come.
    to_client_rate: Option<u64>,
}

/// One proxied connection: its two sockets, and how it is to end.
#[derive(Debug)]
struct Link {
    client: TcpStream,
    server: TcpStream,
    silent: AtomicBool,
    /// Set when the connection is being reset: the pumps then end without a FIN, so that
    /// closing the last descriptor sends an RST.
    resetting: AtomicBool,
}

impl Link {
    /// Ends the connection with a TCP reset on both sides: the linger time is zero, and the
    /// pumps are woken (a shutdown of the reading side sends nothing to the peer) to drop their
    /// descriptors.
    fn reset(&self) {
        self.resetting.store(true, Ordering::SeqCst);
        for stream in [&self.client, &self.server] {
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
            let _ = stream.shutdown(Shutdown::Read);
        }
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target` (a loopback address), with
    /// the seed 0.
    pub fn start(target: SocketAddr) -> std::io::Result<Self> {
        Self::start_seeded(target, 0)
    }

    /// [`Proxy::start`] with the seed of the proxy's random choices.
    pub fn start_seeded(target: SocketAddr, seed: u64) -> std::io::Result<Self> {
        if !target.ip().is_loopback() {
            return Err(std::io::Error::other("the proxy only forwards to loopback"));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            open: AtomicBool::new(true),
            silent: AtomicBool::new(false),
            cut_next: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            links: Mutex::new(Vec::new()),
            shaping: Mutex::new(Shaping::default()),
            random: Mutex::new(SplitMix(seed)),
            resets: AtomicU64::new(0),
            mid_packet_cuts: AtomicU64::new(0),
        });
        let shared = state.clone();
        std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept(&listener, target, &shared))?;
        Ok(Self { addr, state })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Closes every connection at once (both sides see the socket close, no MQTT goodbye)
    /// and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        for link in self.state.live() {
            let _ = link.client.shutdown(Shutdown::Both);
            let _ = link.server.shutdown(Shutdown::Both);
        }
    }

    /// Accepts and forwards connections again, after [`Proxy::cut`] or [`Proxy::black_hole`].
    pub fn restore(&self) {
        self.state.silent.store(false, Ordering::SeqCst);
        self.state.open.store(true, Ordering::SeqCst);
    }

    /// Resets every connection now: both sides get a TCP RST, whatever was in flight is lost.
    /// New connections are accepted as before.
    pub fn reset(&self) {
        for link in self.state.live() {
            link.reset();
            self.state.resets.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Cuts the next chunk that any connection carries (either way) short, at a point drawn
    /// from the seed, forwards that much and resets the connection: the receiver holds the
    /// first part of a packet, never the rest.
    pub fn cut_mid_packet(&self) {
        self.state.cut_next.store(true, Ordering::SeqCst);
    }

    /// Makes every connection a black hole: the bytes either side sends are accepted and
    /// dropped, nothing is delivered, and neither side hears a FIN or an RST. Only a keepalive
    /// can tell. Silenced connections stay so until their client closes them; new connections
    /// are carried as before (see [`Proxy::black_hole`] for a path that stays dead).
    pub fn silence(&self) {
        for link in self.state.live() {
            link.silent.store(true, Ordering::SeqCst);
        }
    }

    /// [`Proxy::silence`], and every new connection too until [`Proxy::restore`]: a path that
    /// stays dead, where a reconnection's CONNECT gets no answer.
    pub fn black_hole(&self) {
        self.state.silent.store(true, Ordering::SeqCst);
        self.silence();
    }

    /// Delays every chunk, either way, by `latency` plus up to `jitter` (drawn from the seed).
    /// Order is kept.
    pub fn set_latency(&self, latency: Duration, jitter: Duration) {
        let mut shaping = self.state.shaping();
        shaping.latency = latency;
        shaping.jitter = jitter;
    }

    /// Delivers at most `bytes_per_second` from the broker to the client (`None`: no limit),
    /// as a client that reads slowly would take them.
    pub fn set_to_client_rate(&self, bytes_per_second: Option<u64>) {
        self.state.shaping().to_client_rate = bytes_per_second.filter(|r| *r > 0);
    }

    /// Connections reset ([`Proxy::reset`]) and cut in the middle of a chunk
    /// ([`Proxy::cut_mid_packet`]) so far.
    pub fn faults(&self) -> (u64, u64) {
        (
            self.state.resets.load(Ordering::Relaxed),
            self.state.mid_packet_cuts.load(Ordering::Relaxed),
        )
    }

    /// How many connections it carries now.
    pub fn connections(&self) -> usize {
        self.state.live().len()
    }
}

impl State {
    fn live(&self) -> Vec<Arc<Link>> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.retain(|link| link.strong_count() > 0);
        links.iter().filter_map(Weak::upgrade).collect()
    }

    fn shaping(&self) -> std::sync::MutexGuard<'_, Shaping> {
        self.shaping.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A number uniform in `0..below` (0 when `below` is 0), from the seed.
    fn below(&self, below: u64) -> u64 {
        if below == 0 {
            return 0;
        }
        self.random
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next()
            % below
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accepting thread so that it sees `stopped`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn accept(listener: &TcpListener, target: SocketAddr, state: &Arc<State>) {
    for client in listener.incoming() {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if !state.open.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        let link = Arc::new(Link {
            client: c3,
            server: s3,
            silent: AtomicBool::new(state.silent.load(Ordering::SeqCst)),
            resetting: AtomicBool::new(false),
        });
        state
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&link));
        let (up, down) = (Arc::clone(&link), link);
        let (state_up, state_down) = (Arc::clone(state), Arc::clone(state));
        std::thread::spawn(move || pump(client, server, &up, &state_up, false));
        std::thread::spawn(move || pump(s2, c2, &down, &state_down, true));
    }
}

/// Copies `from` to `to`, with the faults in force, until either side closes; then closes
/// both, with a FIN, or an RST when the connection is being reset.
fn pump(mut from: TcpStream, mut to: TcpStream, link: &Link, state: &State, to_client: bool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        // A slow reader takes a tenth of a second's worth at a time, so that the pace holds
        // within the second, and a change of rate applies at once.
        let rate = state.shaping().to_client_rate.filter(|_| to_client);
        let take = rate.map_or(buffer.len(), |r| {
            (r / 10).clamp(1, buffer.len() as u64) as usize
        });
        let n = match from.read(&mut buffer[..take]) {
            // A silent link passes nothing on, not even a close: the broker ends a connection
            // it hears nothing on after 1.5 keepalive periods, and its FIN must not tell the
            // client what only the client's own keepalive should.
            Ok(0) | Err(_) if link.silent.load(Ordering::SeqCst) => return,
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if link.silent.load(Ordering::SeqCst) {
            // Accepted by TCP, delivered nowhere.
            continue;
        }
        if state.cut_next.swap(false, Ordering::SeqCst) {
            // At least one byte short, so that the receiver is left inside a packet.
            let keep = state.below(n as u64) as usize;
            let _ = to.write_all(&buffer[..keep]);
            let _ = to.flush();
            state.mid_packet_cuts.fetch_add(1, Ordering::Relaxed);
            link.reset();
            break;
        }
        let shaping = *state.shaping();
        let jitter = state.below(shaping.jitter.as_micros() as u64);
        let delay = shaping.latency + Duration::from_micros(jitter);
        let paced = match (to_client, shaping.to_client_rate) {
            (true, Some(rate)) => Duration::from_secs_f64(n as f64 / rate as f64),
            _ => Duration::ZERO,
        };
        if !(delay + paced).is_zero() {
            std::thread::sleep(delay + paced);
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    if !link.resetting.load(Ordering::SeqCst) {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}

/// Shuffles `items` in an order drawn from `seed` (Fisher-Yates over the proxy's generator):
/// the order of a chaos run's faults, replayed by the same seed.
///
/// ```
/// let mut a = [1, 2, 3, 4, 5];
/// let mut b = a;
/// dese_testkit::shuffle(&mut a, 7);
/// dese_testkit::shuffle(&mut b, 7);
/// assert_eq!(a, b);
/// ```
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut random = SplitMix(seed);
    for i in (1..items.len()).rev() {
        items.swap(i, (random.next() % (i as u64 + 1)) as usize);
    }
}

/// SplitMix64: a small, seedable generator, plenty for choosing where faults fall.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An echo server on loopback.
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer) {
                        if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn client(proxy: &Proxy) -> TcpStream {
        let stream = TcpStream::connect(proxy.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    #[test]
    fn forwards_both_ways() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut stream = client(&proxy);
        stream.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
    }

    // A reset is an RST, not a FIN: the client's read fails with "connection reset".
    #[test]
    fn reset_is_an_rst() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut stream = client(&proxy);
        stream.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).unwrap();
        proxy.reset();
        let mut rest = [0u8; 1];
        let error = stream.read(&mut rest).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
        assert_eq!(proxy.faults().0, 1);
    }

    // A mid-packet cut delivers a strict prefix of the chunk, then resets.
    #[test]
    fn mid_packet_cut_delivers_a_prefix() {
        let proxy = Proxy::start_seeded(echo(), 7).unwrap();
        let mut stream = client(&proxy);
        stream.write_all(b"warm").unwrap();
        let mut warm = [0u8; 4];
        stream.read_exact(&mut warm).unwrap();
        proxy.cut_mid_packet();
        stream.write_all(&[0xAB; 1000]).unwrap();
        let mut got = Vec::new();
        let mut buffer = [0u8; 2048];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buffer[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                    break;
                }
            }
        }
        assert!(got.len() < 1000, "{} bytes came back", got.len());
        assert_eq!(proxy.faults().1, 1);
    }

    // A silent link accepts the client's bytes and delivers nothing, without closing.
    #[test]
    fn a_silent_link_says_nothing() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut stream = client(&proxy);
        proxy.black_hole();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        stream.write_all(b"anyone?").unwrap();
        let mut buffer = [0u8; 16];
        let error = stream.read(&mut buffer).unwrap_err();
        assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{error}"
        );
        proxy.restore();
        let mut fresh = client(&proxy);
        fresh.write_all(b"ok").unwrap();
        let mut got = [0u8; 2];
        fresh.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ok");
    }

    // The same seed draws the same choices.
    #[test]
    fn the_seed_replays() {
        let mut a = SplitMix(42);
        let mut b = SplitMix(42);
        assert!((0..100).all(|_| a.next() == b.next()));
    }
}
