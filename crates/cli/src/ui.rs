//! What a person sees on stderr while signing in: where to go and which code to confirm (always, so scripts can
//! read it), and on a terminal also a QR code and a line with the time left.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use flyteauth_client::flows::{LoginEvent, LoginUi};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The terminal [`LoginUi`] of the CLI.
pub struct TerminalUi {
    tty: bool,
    state: Mutex<State>,
}

struct State {
    out: Box<dyn Write + Send>,
    frame: usize,
    /// A status line is drawn without its newline; anything printed next must erase it first.
    status_line: bool,
}

impl std::fmt::Debug for TerminalUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalUi")
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

impl TerminalUi {
    /// Draws on the process's stderr; QR code and status line only when it is a terminal.
    pub fn stderr() -> Self {
        Self::new(Box::new(std::io::stderr()), std::io::stderr().is_terminal())
    }

    /// Draws on `out`, as on a terminal when `tty`.
    pub fn new(out: Box<dyn Write + Send>, tty: bool) -> Self {
        Self {
            tty,
            state: Mutex::new(State {
                out,
                frame: 0,
                status_line: false,
            }),
        }
    }

    /// Erases the status line, if one is drawn, so that what comes next (a result, an error) starts on a clean
    /// line.
    pub fn finish(&self) {
        let mut state = self.lock();
        state.clear_status();
        let _ = state.out.flush();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while drawing leaves nothing inconsistent worth refusing to draw over.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn line(&self, text: &str) {
        let mut state = self.lock();
        state.clear_status();
        let _ = writeln!(state.out, "{text}");
        let _ = state.out.flush();
    }

    fn status(&self, text: &str) {
        if !self.tty {
            return;
        }
        let mut state = self.lock();
        let frame = SPINNER[state.frame % SPINNER.len()];
        state.frame += 1;
        let _ = write!(state.out, "\r{frame} {text}\x1b[K");
        state.status_line = true;
        let _ = state.out.flush();
    }
}

impl State {
    fn clear_status(&mut self) {
        if self.status_line {
            let _ = write!(self.out, "\r\x1b[K");
            self.status_line = false;
        }
    }
}

impl LoginUi for TerminalUi {
    fn event(&self, event: LoginEvent<'_>) {
        match event {
            LoginEvent::BrowserOpened { url } => {
                self.line(&format!(
                    "Opening your browser to sign in. If it does not open, visit: {url}"
                ));
            }
            LoginEvent::BrowserUnavailable { url, reason } => {
                tracing::debug!(reason, "no browser");
                self.line(&format!("Open this URL in a browser to sign in: {url}"));
            }
            LoginEvent::WaitingForBrowser { remaining } => {
                self.status(&format!(
                    "Waiting for the browser to sign in ({} left)",
                    remaining_text(remaining)
                ));
            }
            LoginEvent::DeviceCode {
                verification_uri_complete,
                user_code,
                expires_in,
                ..
            } => {
                self.line(&format!("To sign in, open {verification_uri_complete}"));
                self.line(&format!("and confirm the code {user_code}"));
                if self.tty {
                    if let Some(code) = qr_code(verification_uri_complete) {
                        self.line(&code);
                    }
                    self.status(&format!(
                        "Waiting for approval ({} left)",
                        remaining_text(expires_in)
                    ));
                }
            }
            LoginEvent::DeviceWaiting { remaining } => {
                self.status(&format!(
                    "Waiting for approval ({} left)",
                    remaining_text(remaining)
                ));
            }
            LoginEvent::DeviceSlowDown { interval } => {
                tracing::debug!(
                    interval_s = interval.as_secs(),
                    "the server asked to poll less often"
                );
            }
            LoginEvent::LoggedIn => self.finish(),
            _ => {}
        }
    }
}

/// The QR code of `text` in Unicode half blocks, light modules drawn, so it reads on a dark terminal.
pub fn qr_code(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// `9m05s`, `42s`.
pub fn remaining_text(remaining: Duration) -> String {
    let secs = remaining.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn device_code() -> LoginEvent<'static> {
        LoginEvent::DeviceCode {
            verification_uri: "https://h/activate",
            verification_uri_complete: "https://h/activate?user_code=ABCD-EFGH",
            user_code: "ABCD-EFGH",
            expires_in: Duration::from_secs(600),
        }
    }

    #[test]
    fn device_code_off_a_terminal_is_two_plain_lines() {
        let out = Captured::default();
        let ui = TerminalUi::new(Box::new(out.clone()), false);
        ui.event(device_code());
        ui.event(LoginEvent::DeviceWaiting {
            remaining: Duration::from_secs(590),
        });
        ui.event(LoginEvent::LoggedIn);
        assert_eq!(
            out.text(),
            "To sign in, open https://h/activate?user_code=ABCD-EFGH\nand confirm the code ABCD-EFGH\n"
        );
    }

    #[test]
    fn device_code_on_a_terminal_adds_qr_and_status() {
        let out = Captured::default();
        let ui = TerminalUi::new(Box::new(out.clone()), true);
        ui.event(device_code());
        ui.event(LoginEvent::DeviceWaiting {
            remaining: Duration::from_secs(65),
        });
        ui.event(LoginEvent::LoggedIn);
        let text = out.text();
        assert!(text.starts_with("To sign in, open https://h/activate?user_code=ABCD-EFGH\nand confirm the code ABCD-EFGH\n"));
        assert!(text.contains('▀') || text.contains('▄'), "{text}");
        assert!(text.contains("\r⠋ Waiting for approval (10m00s left)\x1b[K"));
        assert!(text.contains("\r⠙ Waiting for approval (1m05s left)\x1b[K"));
        assert!(
            text.ends_with("\r\x1b[K"),
            "the status line is erased once signed in"
        );
    }

    #[test]
    fn lines_after_a_status_start_clean() {
        let out = Captured::default();
        let ui = TerminalUi::new(Box::new(out.clone()), true);
        ui.event(LoginEvent::WaitingForBrowser {
            remaining: Duration::from_secs(5),
        });
        ui.event(LoginEvent::BrowserUnavailable {
            url: "https://h/authorize",
            reason: "no xdg-open",
        });
        assert_eq!(
            out.text(),
            "\r⠋ Waiting for the browser to sign in (5s left)\x1b[K\r\x1b[KOpen this URL in a browser to sign in: https://h/authorize\n"
        );
    }

    #[test]
    fn browser_lines() {
        let out = Captured::default();
        let ui = TerminalUi::new(Box::new(out.clone()), false);
        ui.event(LoginEvent::BrowserOpened {
            url: "https://h/authorize?x=1",
        });
        ui.event(LoginEvent::WaitingForBrowser {
            remaining: Duration::from_secs(100),
        });
        ui.event(LoginEvent::BrowserUnavailable {
            url: "https://h/authorize?x=1",
            reason: "none",
        });
        assert_eq!(
            out.text(),
            "Opening your browser to sign in. If it does not open, visit: https://h/authorize?x=1\n\
             Open this URL in a browser to sign in: https://h/authorize?x=1\n"
        );
    }

    #[test]
    fn finish_without_status_writes_nothing() {
        let out = Captured::default();
        let ui = TerminalUi::new(Box::new(out.clone()), true);
        ui.finish();
        assert_eq!(out.text(), "");
    }

    #[test]
    fn qr_code_is_square_blocks() {
        let code = qr_code("https://h/activate?user_code=ABCD-EFGH").unwrap();
        let lines: Vec<&str> = code.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.len() > 10 && lines.iter().all(|l| l.chars().count() == width));
        assert!(
            lines.len() * 2 >= width && lines.len() * 2 <= width + 1,
            "two modules per character row"
        );
    }

    #[test]
    fn remaining() {
        assert_eq!(remaining_text(Duration::from_secs(0)), "0s");
        assert_eq!(remaining_text(Duration::from_secs(59)), "59s");
        assert_eq!(remaining_text(Duration::from_secs(545)), "9m05s");
    }
}
