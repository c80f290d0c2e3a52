//! Running wrk against the in-process server and reading what it reports.
//!
//! The server is measured in this process (its CPU time comes from `/proc/self`); wrk is a separate
//! process, optionally pinned to a CPU of its own with `taskset`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cpu;
use crate::stats::median;

/// What one wrk run reported.
#[derive(Debug, Clone, Copy)]
pub struct WrkRun {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// CPU time of this process (the server; wrk is a separate process) per request, µs.
    pub cpu_us: f64,
}

fn parse_duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        "m" => 60_000_000.0,
        _ => return None,
    };
    Some(value * scale)
}

/// Reads wrk's `--latency` report; any non-2xx answer or socket error is an error.
pub fn parse(output: &str) -> anyhow::Result<WrkRun> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = parse_duration_us(rest);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = parse_duration_us(rest);
        } else if line.contains("requests in") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if line.starts_with("Non-2xx or 3xx responses") {
            bail!("wrk saw error responses: {line}");
        } else if line.starts_with("Socket errors") {
            bail!("wrk saw socket errors: {line}");
        }
    }
    Ok(WrkRun {
        rps: rps.context("no Requests/sec in wrk output")?,
        p50_us: p50.context("no 50% latency in wrk output")?,
        p99_us: p99.context("no 99% latency in wrk output")?,
        requests: requests.context("no request count in wrk output")?,
        cpu_us: f64::NAN,
    })
}

/// Where the load generator runs: its own CPU (`taskset -c N wrk …`) or wherever the scheduler puts it.
#[derive(Debug, Clone, Copy)]
pub struct LoadCpu(pub Option<usize>);

impl LoadCpu {
    /// From a `--wrk-cpu` value: negative means unpinned.
    pub fn from_arg(cpu: i64) -> Self {
        Self(usize::try_from(cpu).ok())
    }

    fn command(self) -> Command {
        match self.0 {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.args(["-c", &cpu.to_string(), "wrk"]);
                command
            }
            None => Command::new("wrk"),
        }
    }
}

/// One wrk run: always 1 thread, `--latency`, 5 s request timeout.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    /// The URL.
    pub url: &'a str,
    /// `Name: value` request headers.
    pub headers: &'a [String],
    /// A Lua script and its arguments (after `--`), if any.
    pub script: Option<(&'a Path, &'a [String])>,
    /// Open connections.
    pub connections: u32,
    /// Duration in seconds.
    pub seconds: u64,
}

/// Whose CPU time a run charges to the server.
#[derive(Debug, Clone, Copy)]
pub enum CpuSource<'a> {
    /// Every thread of this process (an in-process server; wrk is a separate process).
    ThisProcess,
    /// The threads of this process whose name starts with the prefix (the server's runtime).
    Named(&'a str),
    /// Every thread of another process (a server running as a child).
    Process(u32),
}

impl CpuSource<'_> {
    fn snapshot(self) -> anyhow::Result<cpu::Snapshot> {
        match self {
            CpuSource::ThisProcess => cpu::snapshot(),
            CpuSource::Named(prefix) => cpu::snapshot_named(prefix),
            CpuSource::Process(pid) => cpu::snapshot_of(pid),
        }
    }
}

/// A wrk script sending `POST` with the body given as its first argument (after `--`): the same request every
/// time, so wrk formats it once.
pub const POST_SCRIPT: &str = r#"wrk.method = "POST"

function init(args)
  wrk.body = args[1]
end
"#;

/// A wrk script sending `GET` with `Authorization: Bearer <token>`, the tokens read from the file given as its
/// first argument (one a line) and used in the file's order, round and round. Every request is formatted
/// once, in `init`, so choosing one costs wrk a table lookup whether the file holds one token or 100,000
/// (the benchmark's baseline and its churn then cost the load generator the same).
pub const BEARER_CYCLE_SCRIPT: &str = r#"local requests = {}
local count = 0
local sent = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
    end
  end
  if count == 0 then
    error("no tokens in " .. args[1])
  end
end

function request()
  sent = sent % count + 1
  return requests[sent]
end
"#;

/// Runs wrk as `load` describes and adds this process's CPU time per request.
pub fn run(load_cpu: LoadCpu, load: &Load<'_>) -> anyhow::Result<WrkRun> {
    run_measured(load_cpu, load, CpuSource::ThisProcess)
}

/// Runs wrk as `load` describes and adds the CPU time per request of `source`.
pub fn run_measured(
    load_cpu: LoadCpu,
    load: &Load<'_>,
    source: CpuSource<'_>,
) -> anyhow::Result<WrkRun> {
    let cpu_before = source.snapshot()?;
    let mut command = load_cpu.command();
    command.args([
        "-t1",
        &format!("-c{}", load.connections),
        &format!("-d{}s", load.seconds),
        "--latency",
        "--timeout",
        "5s",
    ]);
    for header in load.headers {
        command.args(["-H", header]);
    }
    if let Some((script, _)) = load.script {
        command.arg("-s").arg(script);
    }
    command.arg(load.url);
    if let Some((_, args)) = load.script {
        command.arg("--").args(args);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run wrk (apt-get install wrk)")?;
    let deadline = Instant::now() + Duration::from_secs(load.seconds + 15);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wrk did not finish within {} s + 15 s", load.seconds);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("wrk failed ({}): {stdout}{stderr}", output.status);
    }
    let cpu_ns = source.snapshot()?.since(&cpu_before);
    let mut run = parse(&stdout).with_context(|| format!("wrk output:\n{stdout}{stderr}"))?;
    run.cpu_us = cpu_ns as f64 / 1_000.0 / run.requests.max(1) as f64;
    Ok(run)
}

/// Medians over the rounds of one route or grant.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Server CPU per request, µs.
    pub cpu_us: f64,
}

impl Summary {
    /// The median of each figure over `runs`.
    pub fn of(runs: &[WrkRun]) -> Self {
        let m = |f: fn(&WrkRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Self {
            rps: m(|r| r.rps),
            p50_us: m(|r| r.p50_us),
            p99_us: m(|r| r.p99_us),
            cpu_us: m(|r| r.cpu_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:1/me\n  1 threads and 16 connections\n  \
                   Latency Distribution\n     50%  251.00us\n     75%  300.00us\n     90%  1.20ms\n     \
                   99%    2.50ms\n  123456 requests in 5.00s, 10.00MB read\nRequests/sec:  24691.20\n\
                   Transfer/sec:      2.00MB\n";
        let run = parse(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.rps, 24691.20);
        assert_eq!(run.p50_us, 251.0);
        assert_eq!(run.p99_us, 2500.0);
        assert_eq!(run.requests, 123456);
        assert!(parse("Non-2xx or 3xx responses: 5\nRequests/sec: 1\n").is_err());
        assert!(parse("Socket errors: connect 0, read 1\nRequests/sec: 1\n").is_err());
    }
}
