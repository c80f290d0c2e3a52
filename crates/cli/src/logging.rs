//! Diagnostics on stderr with `-v`: off by default, so a person sees only results and one-line errors.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Debug (`-v`) or trace (`-vv`) of the client library and this command; nothing without `-v`, where even a
/// bug is reported as one `error:` line rather than a panic message and backtrace.
pub fn init(verbose: u8) {
    let Some(directives) = directives(verbose) else {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("error: internal error: {}", panic_message(info))
        }));
        return;
    };
    // Colours only for a person at a terminal: a log piped to a file or a ticket stays readable.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(directives))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned());
    let message = message.lines().next().unwrap_or_default().to_owned();
    match info.location() {
        Some(at) => format!(
            "{message} at {}:{} (run with -v for details)",
            at.file(),
            at.line()
        ),
        None => message,
    }
}

fn directives(verbose: u8) -> Option<&'static str> {
    match verbose {
        0 => None,
        1 => Some("flyteauth_client=debug,flyte=debug"),
        _ => Some("flyteauth_client=trace,flyte=trace"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(directives(0), None);
        assert_eq!(directives(1), Some("flyteauth_client=debug,flyte=debug"));
        assert_eq!(directives(2), Some("flyteauth_client=trace,flyte=trace"));
        assert_eq!(directives(5), Some("flyteauth_client=trace,flyte=trace"));
    }
}
