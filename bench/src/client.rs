//! A minimal blocking HTTP/1.1 keep-alive client.
//!
//! The memory benchmark sends 100,000 requests; a hand-rolled client that writes pre-built request
//! bytes and reads `content-length` bodies costs far less CPU than a general client, so more of
//! the shared machine goes to the server under test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header lines as received (`Name: value`, one a line), parsed only when asked: the memory
    /// benchmark reads 100,000 responses and needs none of them.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header called `name` (any case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| header_value(line, name))
    }

    /// The values of every header called `name` (any case), e.g. each `set-cookie`.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.head
            .lines()
            .filter_map(move |line| header_value(line, name))
    }

    /// The body as text (lossy), for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The value of the header line `line` if the header is called `name` (any case).
fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (n, value) = line.split_once(':')?;
    n.trim().eq_ignore_ascii_case(name).then(|| value.trim())
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Connection {
    /// Connects to `addr` with a 10 s read/write timeout (a hung server fails the benchmark rather
    /// than stalling it).
    pub fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connect to {addr}"))?;
        Self::from_stream(stream, addr)
    }

    /// [`Self::open`] from the local address `local` (another loopback address, e.g. `127.0.0.2`, so the
    /// server sees another client machine).
    pub fn open_from(addr: SocketAddr, local: std::net::IpAddr) -> anyhow::Result<Self> {
        // std cannot bind before connecting; tokio's socket can, and hands the connected socket back.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let stream = runtime
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(local, 0))?;
                tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
            })
            .with_context(|| format!("connect to {addr} from {local}"))?
            .into_std()?;
        stream.set_nonblocking(false)?;
        Self::from_stream(stream, addr)
    }

    fn from_stream(stream: TcpStream, addr: SocketAddr) -> anyhow::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            reader: BufReader::with_capacity(16 * 1024, stream.try_clone()?),
            writer: stream,
            host: addr.to_string(),
        })
    }

    /// The bytes of a request on this connection; build once and pass to [`Self::send_raw`] in
    /// a loop.
    pub fn build(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// Sends one request and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let raw = self.build(method, path, headers, body);
        self.send_raw(&raw)
    }

    /// Sends pre-built request bytes and reads the response.
    pub fn send_raw(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        self.writer.write_all(request).context("send request")?;
        self.read_response()
    }

    fn read_response(&mut self) -> anyhow::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("connection closed before a response");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        let mut head = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed inside the response head");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>().context("content-length")?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not supported by the bench client");
                }
            }
            head.push_str(header);
            head.push('\n');
        }
        let mut body = vec![0; length.unwrap_or(0)];
        self.reader.read_exact(&mut body).context("read body")?;
        Ok(Response { status, head, body })
    }
}

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    Connection::open(addr)?.request("GET", path, headers, &[])
}

/// Polls `GET path` until it answers 200, for at most `limit`.
pub fn wait_until_up(addr: SocketAddr, path: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match get(addr, path, &[]) {
            Ok(r) if r.status == 200 => return Ok(()),
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(r) => bail!("{path} answered {} after {limit:?}", r.status),
            Err(e) => return Err(e.context(format!("{path} not reachable after {limit:?}"))),
        }
    }
}
