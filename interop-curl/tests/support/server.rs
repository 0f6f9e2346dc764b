//! A small HTTP/1.1 server on loopback for the tests and the benchmark: a thread per
//! connection, keep-alive, plain or TLS, with routes that misbehave on purpose.
//!
//! Routes (`GET` unless said):
//! - `/bytes/N?seed=S`: `N` bytes of [`pattern`]`(S, N)` with a `Content-Length`;
//! - `/static/N`: the first `N` bytes (at most 64 MiB) of `pattern(0, 64 MiB)`, made once
//!   (the benchmark's route: no per-request work but the write);
//! - `/slow/N?chunk=C&ms=M&seed=S`: the same body, `C` bytes every `M` ms;
//! - `/stall`: reads the request and never answers;
//! - `/stall-after/N?seed=S`: announces `2N` bytes, sends `N`, then stalls;
//! - `/die/N?seed=S`: announces `2N` bytes, sends `N`, then closes the connection;
//! - `POST /upload` (`Content-Length` or chunked): answers `len=L fnv=H` for the bytes it got.
//!
//! [`ServerStats`] counts connections (and the most open at once), requests, and responses
//! the client broke off; each connection thread adds its CPU time when it ends.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use openssl::ssl::{SslAcceptor, SslStream};

/// The body of `/bytes/N?seed=S`: deterministic, different per seed, not periodic in a way a
/// misplaced chunk could hide.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&bytes[..take]);
    }
    out
}

/// The body `/static/N` serves a prefix of.
pub fn static_body() -> &'static [u8] {
    static BODY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BODY.get_or_init(|| pattern(0, 64 << 20))
}

/// FNV-1a, what `/upload` answers for the bytes it received.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections open now.
    pub open: AtomicUsize,
    /// The most connections open at once.
    pub peak_open: AtomicUsize,
    /// Requests read.
    pub requests: AtomicUsize,
    /// Responses the client broke off (a write failed, or it closed during a stall).
    pub broken: AtomicUsize,
    /// CPU time of the connection threads that ended, in nanoseconds.
    pub cpu_ns: AtomicU64,
}

/// A running server; dropping it shuts every connection down.
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    stats: Arc<ServerStats>,
    shutdown: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// A plain HTTP server on 127.0.0.1, a free port.
    pub fn http() -> Server {
        Server::start(None)
    }

    /// An HTTPS server with `acceptor`'s certificate.
    pub fn https(acceptor: Arc<SslAcceptor>) -> Server {
        Server::start(Some(acceptor))
    }

    fn start(tls: Option<Arc<SslAcceptor>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let stats = Arc::new(ServerStats::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let is_tls = tls.is_some();
        let accept = {
            let (stats, shutdown, streams) = (stats.clone(), shutdown.clone(), streams.clone());
            thread::Builder::new()
                .name("test-server-accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if shutdown.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let _ = stream.set_nodelay(true);
                        if let Ok(clone) = stream.try_clone() {
                            streams.lock().expect("streams").push(clone);
                        }
                        stats.connections.fetch_add(1, Ordering::SeqCst);
                        let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
                        stats.peak_open.fetch_max(open, Ordering::SeqCst);
                        let (stats, shutdown, tls) = (stats.clone(), shutdown.clone(), tls.clone());
                        let _ = thread::Builder::new()
                            .name("test-server-conn".into())
                            .spawn(move || {
                                serve_connection(stream, tls, &stats, &shutdown);
                                let cpu = thread_cpu_ns();
                                stats.cpu_ns.fetch_add(cpu, Ordering::SeqCst);
                                stats.open.fetch_sub(1, Ordering::SeqCst);
                            });
                    }
                })
                .expect("spawn the accept thread")
        };
        Server {
            addr,
            tls: is_tls,
            stats,
            shutdown,
            streams,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT{path}` (or `https://`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// What it saw so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for stream in self.streams.lock().expect("streams").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// CPU time of the calling thread (the kit's clock: glibc's, which valgrind understands;
/// rustix's own vDSO parser crashes under valgrind).
pub fn thread_cpu_ns() -> u64 {
    let t = anyloop_conformance::driver::thread_cpu_time();
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
}

impl Request {
    fn number(&self, key: &str, default: u64) -> u64 {
        self.query
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

fn read_request(reader: &mut BufReader<Conn>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), query),
        None => (target.clone(), ""),
    };
    let query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
    }))
}

fn read_body(reader: &mut BufReader<Conn>, request: &Request) -> io::Result<Vec<u8>> {
    if let Some(length) = request.headers.get("content-length") {
        let length: usize = length.parse().unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let chunked = request
        .headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Ok(body)
}

fn head(length: usize) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: application/octet-stream\r\n\r\n")
}

/// Waits until the client closes the connection or the server shuts down (bounded: 60 s).
fn stall(raw: &TcpStream, shutdown: &AtomicBool, stats: &ServerStats) {
    let _ = raw.set_read_timeout(Some(Duration::from_millis(20)));
    let mut byte = [0u8; 1];
    for _ in 0..3000 {
        if shutdown.load(Ordering::SeqCst) {
            return;
        }
        match raw.peek(&mut byte) {
            Ok(0) => {
                stats.broken.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(_) => thread::sleep(Duration::from_millis(20)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                stats.broken.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    tls: Option<Arc<SslAcceptor>>,
    stats: &ServerStats,
    shutdown: &AtomicBool,
) {
    let Ok(raw) = stream.try_clone() else { return };
    let conn = match tls {
        None => Conn::Plain(stream),
        Some(acceptor) => match acceptor.accept(stream) {
            Ok(tls) => Conn::Tls(Box::new(tls)),
            Err(_) => return, // e.g. a client that does not trust the test CA
        },
    };
    let mut reader = BufReader::with_capacity(16 * 1024, conn);
    while let Ok(Some(request)) = read_request(&mut reader) {
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let close = request
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let seed = request.number("seed", 1);
        let mut segments = request.path.trim_start_matches('/').split('/');
        let route = segments.next().unwrap_or_default().to_owned();
        let n = segments
            .next()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let served: io::Result<bool> = (|| {
            let out = reader.get_mut();
            match (request.method.as_str(), route.as_str()) {
                ("GET", "bytes") => {
                    let mut response = head(n).into_bytes();
                    response.extend_from_slice(&pattern(seed, n));
                    out.write_all(&response)?;
                    Ok(true)
                }
                ("GET", "static") => {
                    let body = &static_body()[..n.min(64 << 20)];
                    if body.len() <= 64 * 1024 {
                        let mut response = head(body.len()).into_bytes();
                        response.extend_from_slice(body);
                        out.write_all(&response)?;
                    } else {
                        out.write_all(head(body.len()).as_bytes())?;
                        out.write_all(body)?;
                    }
                    Ok(true)
                }
                ("GET", "slow") => {
                    let chunk = request.number("chunk", 1024).max(1) as usize;
                    let pause = Duration::from_millis(request.number("ms", 10));
                    let body = pattern(seed, n);
                    out.write_all(head(n).as_bytes())?;
                    for piece in body.chunks(chunk) {
                        if shutdown.load(Ordering::SeqCst) {
                            return Ok(false);
                        }
                        out.write_all(piece)?;
                        out.flush()?;
                        thread::sleep(pause);
                    }
                    Ok(true)
                }
                ("GET", "stall") => {
                    stall(&raw, shutdown, stats);
                    Ok(false)
                }
                ("GET", "stall-after") => {
                    out.write_all(head(2 * n).as_bytes())?;
                    out.write_all(&pattern(seed, n))?;
                    out.flush()?;
                    stall(&raw, shutdown, stats);
                    Ok(false)
                }
                ("GET", "die") => {
                    out.write_all(head(2 * n).as_bytes())?;
                    out.write_all(&pattern(seed, n))?;
                    out.flush()?;
                    Ok(false)
                }
                ("POST" | "PUT", "upload") => {
                    let body = read_body(&mut reader, &request)?;
                    let answer = format!("len={} fnv={:016x}", body.len(), fnv1a(&body));
                    let out = reader.get_mut();
                    out.write_all(head(answer.len()).as_bytes())?;
                    out.write_all(answer.as_bytes())?;
                    Ok(true)
                }
                _ => {
                    let answer = b"not found";
                    let head = format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
                        answer.len()
                    );
                    out.write_all(head.as_bytes())?;
                    out.write_all(answer)?;
                    Ok(true)
                }
            }
        })();
        match served {
            Ok(true) if !close => continue,
            Ok(_) => break,
            Err(_) => {
                stats.broken.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
    }
    let _ = raw.shutdown(Shutdown::Both);
}
