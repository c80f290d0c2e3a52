//! The HTML pages a person sees: the login form, error pages and short notices.
//!
//! Plain HTML that works without JavaScript; every interpolated value goes through [`escape`]. The pages carry
//! no third-party resources, so a strict `Content-Security-Policy` (set by [`html_response`]) holds.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f4f5f7;\
color:#1d2330;margin:0}main{max-width:26rem;margin:8vh auto;background:#fff;border-radius:10px;\
box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem 2.2rem}h1{font-size:1.35rem;margin:0 0 1.2rem}\
p{line-height:1.45}label{display:block;font-weight:600;margin:1rem 0 .3rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #b9bfcc;\
border-radius:6px;font-size:1rem}input:focus{outline:2px solid #4a3ab5;outline-offset:1px;border-color:#4a3ab5}\
button{margin-top:1.4rem;width:100%;padding:.7rem;border:0;border-radius:6px;\
background:#4a3ab5;color:#fff;font-size:1rem;font-weight:600;cursor:pointer}\
button.secondary{background:#e4e6eb;color:#1d2330;margin-top:.6rem}\
a.button{display:block;text-align:center;box-sizing:border-box;width:100%;padding:.7rem;border-radius:6px;\
background:#e4e6eb;color:#1d2330;font-weight:600;text-decoration:none}\
.error{background:#fdecec;color:#8a1c1c;border:1px solid #f3b8b8;border-radius:6px;padding:.6rem .8rem}\
.muted{color:#5b6475;font-size:.9rem}code{background:#f0f1f4;padding:.1rem .3rem;border-radius:4px}";

/// A whole page around `body` (already escaped HTML).
fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · flyteauth</title><style>{STYLE}</style></head>\
<body><main>{body}</main></body></html>\n",
        title = escape(title),
    )
}

/// An HTML response that is never cached, never framed and loads nothing from elsewhere.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// What the login form shows.
#[derive(Debug, Default)]
pub struct LoginForm<'a> {
    /// The user name to pre-fill (after a failed attempt).
    pub username: &'a str,
    /// The relative URL to continue to after login.
    pub return_to: &'a str,
    /// The CSRF token the form must send back.
    pub csrf_token: &'a str,
    /// An error to show above the form.
    pub error: Option<&'a str>,
    /// Which application asked for the login, if known.
    pub client: Option<&'a str>,
    /// When the deployment also signs people in through an identity provider: the link that starts it and the
    /// provider's name.
    pub federated: Option<(&'a str, &'a str)>,
}

/// The login page.
pub fn login_page(form: &LoginForm<'_>) -> String {
    let error = form
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let client = form
        .client
        .map(|c| {
            format!(
                "<p class=\"muted\">to continue to <strong>{}</strong></p>",
                escape(c)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{client}{error}\
<form method=\"post\" action=\"/login\">\
<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"return_to\" value=\"{return_to}\">\
<label for=\"username\">User name</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" \
autocapitalize=\"none\" spellcheck=\"false\" required{focus_user}>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required{focus_password}>\
<button type=\"submit\">Sign in</button></form>{federated}",
        federated = form
            .federated
            .map(|(href, name)| format!(
                "<p class=\"muted\">or</p><p><a id=\"federated-login\" class=\"button\" href=\"{}\">Sign in with {}</a></p>",
                escape(href),
                escape(name)
            ))
            .unwrap_or_default(),
        csrf = escape(form.csrf_token),
        return_to = escape(form.return_to),
        username = escape(form.username),
        // After a failed attempt the name is filled in: the password is what to type next.
        focus_user = if form.username.is_empty() {
            " autofocus"
        } else {
            ""
        },
        focus_password = if form.username.is_empty() {
            ""
        } else {
            " autofocus"
        },
    );
    layout("Sign in", &body)
}

/// The first activation page: where a person types the code their terminal shows.
pub fn activate_enter_page(typed: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Connect a device</h1><p>Enter the code shown in your terminal.</p>{error}\
<form method=\"get\" action=\"/activate\">\
<label for=\"user_code\">Code</label>\
<input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{typed}\" placeholder=\"XXXX-XXXX\" \
autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" maxlength=\"32\" required autofocus>\
<button type=\"submit\">Continue</button></form>",
        typed = escape(typed),
    );
    layout("Connect a device", &body)
}

/// What the approval page shows.
#[derive(Debug)]
pub struct DeviceApproval<'a> {
    /// The code, as displayed (`XXXX-XXXX`).
    pub user_code: &'a str,
    /// The application asking.
    pub client: &'a str,
    /// The scopes it asks for.
    pub scopes: &'a [String],
    /// Who is signed in.
    pub username: &'a str,
    /// The CSRF token the form must send back.
    pub csrf_token: &'a str,
}

/// The approval page: which application asks for what, as whom; approve or deny.
pub fn activate_confirm_page(a: &DeviceApproval<'_>) -> String {
    let scopes = if a.scopes.is_empty() {
        "<li>no particular permissions</li>".to_owned()
    } else {
        a.scopes
            .iter()
            .map(|s| format!("<li><code>{}</code></li>", escape(s)))
            .collect()
    };
    let body = format!(
        "<h1>Connect a device</h1>\
<p><strong>{client}</strong> asks to act as <strong>{user}</strong> on a device showing the code \
<strong>{code}</strong>, with these permissions:</p><ul>{scopes}</ul>\
<p class=\"muted\">Approve only if you started this sign-in yourself and your terminal shows this code.</p>\
<form method=\"post\" action=\"/activate\">\
<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
        client = escape(a.client),
        user = escape(a.username),
        code = escape(a.user_code),
        csrf = escape(a.csrf_token),
    );
    layout("Connect a device", &body)
}

/// An error page: what went wrong and what to do about it.
pub fn error_page(title: &str, message: &str, hint: Option<&str>) -> String {
    let hint = hint
        .map(|h| format!("<p class=\"muted\">{}</p>", escape(h)))
        .unwrap_or_default();
    let body = format!(
        "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>{hint}<p class=\"muted\"><a href=\"/\">flyteauth home</a></p>",
        escape(title),
        escape(message)
    );
    layout(title, &body)
}

/// A short notice (e.g. "you are signed out").
pub fn notice_page(title: &str, message: &str) -> String {
    let body = format!("<h1>{}</h1><p>{}</p>", escape(title), escape(message));
    layout(title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_controls() {
        assert_eq!(
            escape("<script>\"a\"&'b'\u{7}</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;\u{fffd}&lt;/script&gt;"
        );
    }

    #[test]
    fn login_page_has_labelled_inputs_and_csrf_field() {
        let html = login_page(&LoginForm {
            username: "al\"ice",
            return_to: "/oauth2/authorize?a=1&b=2",
            csrf_token: "tok",
            error: Some("Wrong user name or password."),
            client: Some("flytectl"),
            federated: Some(("/login/federated?redirect_url=%2Fx", "idp.example")),
        });
        assert!(html.contains(
            "id=\"federated-login\" class=\"button\" href=\"/login/federated?redirect_url=%2Fx\""
        ));
        assert!(html.contains("Sign in with idp.example"));
        assert!(html.contains("<label for=\"username\">"));
        assert!(html.contains("<label for=\"password\">"));
        assert!(html.contains("name=\"csrf_token\" value=\"tok\""));
        assert!(html.contains("value=\"/oauth2/authorize?a=1&amp;b=2\""));
        assert!(html.contains("value=\"al&quot;ice\""));
        assert!(html.contains("role=\"alert\">Wrong user name or password."));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn activation_pages_escape_and_carry_the_code() {
        let html = activate_enter_page("<x>", Some("That code is not valid."));
        assert!(html.contains("name=\"user_code\" value=\"&lt;x&gt;\""));
        assert!(html.contains("<label for=\"user_code\">"));
        let scopes = vec!["all".to_owned(), "offline".to_owned()];
        let html = activate_confirm_page(&DeviceApproval {
            user_code: "BCDF-GHJK",
            client: "flytectl",
            scopes: &scopes,
            username: "alice",
            csrf_token: "t",
        });
        assert!(html.contains("name=\"user_code\" value=\"BCDF-GHJK\""));
        assert!(html.contains("value=\"approve\"") && html.contains("value=\"deny\""));
        assert!(html.contains("<code>offline</code>"));
    }

    #[test]
    fn error_page_escapes_its_message() {
        let html = error_page("Login failed", "<b>x</b>", Some("try again"));
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(html.contains("try again"));
    }
}
