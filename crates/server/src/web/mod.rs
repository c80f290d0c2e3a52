//! The browser side of the server: the login page and its session cookie.
//!
//! - [`pages`]: the HTML a person sees;
//! - [`cookies`]: cookie names, attributes and parsing;
//! - [`session`]: login sessions (cookie ↔ store);
//! - [`login`]: `GET`/`POST /login`, `GET /logout`; [`activate`]: approving a device sign-in;
//! - [`throttle`]: the per-address slow-down of password guessing.

pub mod activate;
pub mod cookies;
pub mod login;
pub mod pages;
pub mod session;
pub mod throttle;
