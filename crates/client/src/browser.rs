//! Opening a URL in the person's browser the way Python's `webbrowser` does on Linux: `$BROWSER` first (a
//! `:`-separated list; `%s` is replaced by the URL, else the URL is appended), then `xdg-open` (`open` on macOS).
//! The command is started and not waited for, so a browser that stays open does not block the login.
//!
//! As in `webbrowser`, `xdg-open` is only tried with a graphical display (`$DISPLAY` or `$WAYLAND_DISPLAY`):
//! over SSH it would fail out of sight, and the person is better told to open the URL.

use std::process::{Command, Stdio};

/// What happened when asked to open a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// This program was started with the URL.
    Started(String),
    /// Nothing could be started; why.
    Unavailable(String),
}

/// Starts the browser on `url`.
pub fn open(url: &str) -> Opened {
    let browser = std::env::var("BROWSER").ok();
    let has_display = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    open_with(url, browser.as_deref(), platform_opener(has_display))
}

/// The system's URL opener, or why there is none.
fn platform_opener(has_display: impl Fn(&str) -> bool) -> Result<&'static str, String> {
    if cfg!(target_os = "macos") {
        Ok("open")
    } else if !cfg!(unix) {
        Err("no $BROWSER is set".into())
    } else if has_display("DISPLAY") || has_display("WAYLAND_DISPLAY") {
        Ok("xdg-open")
    } else {
        Err("no $BROWSER is set and there is no graphical display".into())
    }
}

/// [`open`] with `$BROWSER` and the system's opener given.
fn open_with(url: &str, browser: Option<&str>, opener: Result<&str, String>) -> Opened {
    let mut failures = Vec::new();
    let entries = browser
        .into_iter()
        .flat_map(|list| list.split(':'))
        .filter(|e| !e.trim().is_empty());
    for entry in entries {
        let Some(words) = split_words(entry) else {
            failures.push(format!("cannot read $BROWSER entry {entry:?}"));
            continue;
        };
        match start(&words, url) {
            Ok(program) => return Opened::Started(program),
            Err(reason) => failures.push(reason),
        }
    }
    match opener {
        Ok(program) => match start(&[program.to_owned()], url) {
            Ok(program) => return Opened::Started(program),
            Err(reason) => failures.push(reason),
        },
        Err(reason) if failures.is_empty() => failures.push(reason),
        Err(_) => {}
    }
    Opened::Unavailable(failures.join("; "))
}

/// Starts `words` on `url` and returns the program's name. The child gets no terminal and a process group of
/// its own (a Ctrl-C at the prompt must not close a browser it started); a thread waits for it so it leaves
/// no zombie, without holding up the login.
fn start(words: &[String], url: &str) -> Result<String, String> {
    let Some((program, args)) = words.split_first() else {
        return Err("empty $BROWSER entry".into());
    };
    // `webbrowser`'s way of saying "in the background", which every start here is.
    let args = match args.split_last() {
        Some((last, rest)) if last == "&" => rest,
        _ => args,
    };
    let mut argv: Vec<String> = args.iter().map(|a| a.replace("%s", url)).collect();
    if !args.iter().any(|a| a.contains("%s")) {
        argv.push(url.to_owned());
    }
    let mut command = Command::new(program);
    command
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let reaper = std::thread::Builder::new()
        .name("browser-wait".into())
        .spawn(move || {
            let _ = child.wait();
        });
    if let Err(error) = reaper {
        tracing::debug!(%error, "cannot wait for the browser command; it stays a zombie until we exit");
    }
    Ok(program.clone())
}

/// Splits a command line into words as a POSIX shell (and Python's `shlex`) does for the simple cases:
/// blanks separate, `'…'` is literal, `"…"` and `\` escape. `None` for an unterminated quote.
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::*;

    const URL: &str = "https://idp.example/authorize?client_id=flytectl&state=abc";

    /// A stand-in browser: a shell script (run through `sh`, so nothing executes a freshly written file) that
    /// records its arguments, one per line.
    struct Recorder {
        _dir: tempfile::TempDir,
        script: PathBuf,
        out: PathBuf,
    }

    impl Recorder {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("browser.sh");
            let out = dir.path().join("args");
            let body = format!(
                "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
                out.display()
            );
            std::fs::write(&script, body).unwrap();
            Self {
                _dir: dir,
                script,
                out,
            }
        }

        fn entry(&self, rest: &str) -> String {
            format!("sh '{}' {rest}", self.script.display())
        }

        fn args(&self) -> Vec<String> {
            wait_for(&self.out).lines().map(str::to_owned).collect()
        }
    }

    fn wait_for(path: &Path) -> String {
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the browser command never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn percent_s_is_replaced() {
        let r = Recorder::new();
        let opened = open_with(URL, Some(&r.entry("--new-tab %s")), Err("none".into()));
        assert_eq!(opened, Opened::Started("sh".into()));
        assert_eq!(r.args(), ["--new-tab", URL]);
    }

    #[test]
    fn without_percent_s_the_url_is_appended() {
        let r = Recorder::new();
        let opened = open_with(URL, Some(&r.entry("--flag &")), Err("none".into()));
        assert_eq!(opened, Opened::Started("sh".into()));
        assert_eq!(r.args(), ["--flag", URL]);
    }

    #[test]
    fn the_first_entry_that_starts_wins() {
        let r = Recorder::new();
        let list = format!(
            "/nonexistent/browser-one %s::{}:/nonexistent/browser-two",
            r.entry("%s")
        );
        assert_eq!(
            open_with(URL, Some(&list), Err("none".into())),
            Opened::Started("sh".into())
        );
        assert_eq!(r.args(), [URL]);
    }

    #[test]
    fn the_system_opener_comes_after_browser() {
        let opened = open_with(URL, Some("/nonexistent/browser-one"), Ok("true"));
        assert_eq!(opened, Opened::Started("true".into()));
    }

    #[test]
    fn nothing_available() {
        let Opened::Unavailable(reason) = open_with(URL, None, Err("no display".into())) else {
            panic!()
        };
        assert_eq!(reason, "no display");
        let Opened::Unavailable(reason) = open_with(
            URL,
            Some("/nonexistent/a:'unterminated"),
            Ok("/nonexistent/opener"),
        ) else {
            panic!()
        };
        assert!(reason.contains("cannot start /nonexistent/a"), "{reason}");
        assert!(reason.contains("cannot read $BROWSER entry"), "{reason}");
        assert!(
            reason.contains("cannot start /nonexistent/opener"),
            "{reason}"
        );
    }

    #[test]
    fn opener_needs_a_display_on_linux() {
        if cfg!(target_os = "linux") {
            assert_eq!(platform_opener(|v| v == "WAYLAND_DISPLAY"), Ok("xdg-open"));
            assert!(platform_opener(|_| false).is_err());
        }
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words("  a  'b c' \"d \\\"e\\\"\" f\\ g").unwrap(),
            ["a", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(split_words("''").unwrap(), [""]);
        assert!(split_words("a 'b").is_none());
        assert!(split_words("a \"b").is_none());
    }
}
