//! Shared pieces of the flyteauth benchmarks (`validation`, `http`, `grants`, `memory`, `flood`, `issuance`,
//! `peer`, `scale`).
//!
//! Every benchmark compares against a baseline measured in the same process or the same run and
//! reports ratios, because absolute figures on a shared 2-core machine move from run to run while
//! ratios of interleaved measurements mostly do not.

pub mod browser;
pub mod client;
pub mod cpu;
pub mod fixture;
pub mod grant_fixture;
pub mod inproc;
pub mod node_peer;
pub mod plot;
pub mod process;
pub mod signing;
pub mod stats;
pub mod wrk;

use std::time::Duration;

/// Ends the process with exit code 3 if it is still running after `limit`, so a hung server or
/// load generator cannot keep a benchmark alive. `on_timeout` runs first (e.g. to kill a child).
pub fn watchdog(limit: Duration, on_timeout: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("watchdog".to_owned())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("benchmark exceeded its time limit of {limit:?}; aborting");
            on_timeout();
            std::process::exit(3);
        });
    if let Err(err) = spawned {
        eprintln!("warning: watchdog thread not started: {err}");
    }
}

/// Parses `--name value` from the process arguments, falling back to `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            let Some(value) = args.next() else {
                anyhow::bail!("{name} needs a value");
            };
            return value
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}: cannot parse {value:?}"));
        }
    }
    Ok(default)
}

/// Whether the flag `name` (e.g. `--write`) is among the process arguments.
pub fn flag(name: &str) -> bool {
    std::env::args().skip(1).any(|a| a == name)
}
