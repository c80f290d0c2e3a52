//! Device authorization grant (RFC 8628): device codes, their user codes and the polling state machine.
//!
//! A device code starts [`DeviceStatus::Pending`]. The person who enters its user code approves or denies it
//! ([`DeviceStore::decide_device_code`]); the device polls ([`DeviceStore::poll_device_code`]) until it learns the
//! outcome, and an approved code is redeemed by exactly one poll.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::{check, check_list};

/// How much [`DeviceStore::poll_device_code`] adds to a code's polling interval each time it answers
/// [`DevicePoll::SlowDown`] (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP_SECS: i64 = 5;

/// Persistence of device codes, keyed by the device code's hash and, while unexpired, by the user code.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Stores a new, pending code (no poll yet, no approval) and returns it as stored.
    ///
    /// A user code belongs to at most one unexpired code: a stored code with the same user code whose `expires_at`
    /// is at or before the new code's `created_at` is deleted in the same transaction, so its user code can be
    /// handed out again. Fails with [`StoreError::AlreadyExists`] with entity `"device code"` and key `<redacted>`
    /// when the hash is already stored, or with entity `"user code"` and the user code as key when an unexpired
    /// code has the same user code; nothing changes then.
    async fn create_device_code(
        &self,
        code: &NewDeviceCode,
    ) -> Result<DeviceCodeRecord, StoreError>;

    /// Looks a code up by its (normalized) user code; only a code with `expires_at > now` is found.
    async fn get_device_by_user_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<Option<DeviceCodeRecord>, StoreError>;

    /// Records the person's decision, atomically: if the code with this user code is [`DeviceStatus::Pending`]
    /// and `expires_at > now`, it becomes [`DeviceStatus::Approved`] with the approval's fields (`Some`) or
    /// [`DeviceStatus::Denied`] (`None`), with `decided_at` = `now`.
    ///
    /// Returns the updated code, or `None` (and changes nothing) when no pending, unexpired code has this user
    /// code: unknown, expired or already decided. Of concurrent decisions at most one succeeds.
    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<DeviceApproval>,
        now: i64,
    ) -> Result<Option<DeviceCodeRecord>, StoreError>;

    /// Handles one poll of the device, in one transaction (concurrent polls of one code run one after the other):
    ///
    /// 1. unknown hash: [`DevicePoll::NotFound`];
    /// 2. already redeemed: [`DevicePoll::AlreadyRedeemed`], nothing changes;
    /// 3. `expires_at <= now`: [`DevicePoll::Expired`], nothing changes;
    /// 4. polled before and `now < last_polled_at + interval_secs`: `interval_secs` grows by
    ///    [`SLOW_DOWN_STEP_SECS`] and `last_polled_at` becomes `now`: [`DevicePoll::SlowDown`];
    /// 5. otherwise `last_polled_at` becomes `now`, and by status: pending: [`DevicePoll::Pending`]; denied:
    ///    [`DevicePoll::Denied`]; approved: the code becomes [`DeviceStatus::Redeemed`]:
    ///    [`DevicePoll::Redeemed`], for exactly one poll however many race.
    ///
    /// Each outcome carries the code as it is after this call.
    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<DevicePoll, StoreError>;

    /// Deletes codes that expired before `now` (`expires_at < now`), whatever their status; returns how many.
    async fn purge_expired_device_codes(&self, now: i64) -> Result<u64, StoreError>;
}

/// Where a device code stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    /// Waiting for the person to approve or deny.
    Pending,
    /// Approved; the next poll redeems it.
    Approved,
    /// Denied by the person.
    Denied,
    /// Approved and redeemed by a poll; tokens were issued once.
    Redeemed,
}

impl DeviceStatus {
    /// Every status, in declaration order.
    pub const ALL: [DeviceStatus; 4] = [
        DeviceStatus::Pending,
        DeviceStatus::Approved,
        DeviceStatus::Denied,
        DeviceStatus::Redeemed,
    ];

    /// The stored name: `"pending"`, `"approved"`, `"denied"` or `"redeemed"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Redeemed => "redeemed",
        }
    }

    /// The status with the given stored name (exact, lower case), if any.
    pub fn parse(name: &str) -> Option<Self> {
        DeviceStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decodes a stored status name.
pub(crate) fn decode_status(raw: &str) -> Result<DeviceStatus, StoreError> {
    DeviceStatus::parse(raw).ok_or_else(|| {
        crate::error::corrupt("device_codes", "status", format!("unknown status `{raw}`"))
    })
}

/// The outcome of [`DeviceStore::poll_device_code`]; each record is the code as it is after the poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DevicePoll {
    /// No code has this hash.
    NotFound,
    /// The code has expired; nothing changed.
    Expired(DeviceCodeRecord),
    /// Polled too soon after the previous poll; the interval grew and the poll was recorded.
    SlowDown(DeviceCodeRecord),
    /// Still waiting for the person; the poll was recorded.
    Pending(DeviceCodeRecord),
    /// The person denied it; the poll was recorded.
    Denied(DeviceCodeRecord),
    /// Approved, and this call redeemed it (exactly one poll gets this); the record carries the approval.
    Redeemed(DeviceCodeRecord),
    /// Redeemed by an earlier poll; nothing changed.
    AlreadyRedeemed(DeviceCodeRecord),
}

/// The approving person, recorded by [`DeviceStore::decide_device_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceApproval {
    /// Subject of the user who approved.
    pub subject: String,
    /// User name of the user who approved.
    pub username: String,
    /// The refresh/login family the tokens issued for this code will belong to.
    pub family_id: String,
    /// When the user authenticated, unix seconds.
    pub auth_time: i64,
}

impl DeviceApproval {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("subject", &self.subject)?;
        check("username", &self.username)?;
        check("family_id", &self.family_id)
    }
}

/// A device code to be stored.
///
/// `Debug` prints `device_code_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewDeviceCode {
    /// Hash of the device code (e.g. SHA-256 hex); the code itself is never stored.
    pub device_code_hash: String,
    /// The user code in normalized form (8 characters, no separator).
    pub user_code: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted audiences.
    pub audience: Vec<String>,
    /// The minimum number of seconds between polls.
    pub interval_secs: i64,
    /// When the code was issued, unix seconds.
    pub created_at: i64,
    /// When the code stops being valid, unix seconds.
    pub expires_at: i64,
}

/// A device code as stored.
///
/// `Debug` prints `device_code_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCodeRecord {
    /// Hash of the device code.
    pub device_code_hash: String,
    /// The user code in normalized form.
    pub user_code: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted audiences.
    pub audience: Vec<String>,
    /// The minimum number of seconds between polls (grows with every slow-down answer).
    pub interval_secs: i64,
    /// When the code was issued, unix seconds.
    pub created_at: i64,
    /// When the code stops being valid, unix seconds.
    pub expires_at: i64,
    /// Where the code stands.
    pub status: DeviceStatus,
    /// When the device last polled (and the poll was counted), unix seconds; `None` before the first poll.
    pub last_polled_at: Option<i64>,
    /// Subject of the approving user; empty unless approved (or redeemed).
    pub subject: String,
    /// User name of the approving user; empty unless approved (or redeemed).
    pub username: String,
    /// The refresh/login family of the tokens issued for this code; empty unless approved (or redeemed).
    pub family_id: String,
    /// When the approving user authenticated, unix seconds; `0` unless approved (or redeemed).
    pub auth_time: i64,
    /// When the code was approved or denied, unix seconds; `None` while pending.
    pub decided_at: Option<i64>,
}

impl NewDeviceCode {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("device_code_hash", &self.device_code_hash)?;
        check("user_code", &self.user_code)?;
        check("client_id", &self.client_id)?;
        check_list("scopes", &self.scopes)?;
        check_list("audience", &self.audience)
    }

    /// The code as [`DeviceStore::create_device_code`] stores it.
    pub(crate) fn to_record(&self) -> DeviceCodeRecord {
        DeviceCodeRecord {
            device_code_hash: self.device_code_hash.clone(),
            user_code: self.user_code.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
            audience: self.audience.clone(),
            interval_secs: self.interval_secs,
            created_at: self.created_at,
            expires_at: self.expires_at,
            status: DeviceStatus::Pending,
            last_polled_at: None,
            subject: String::new(),
            username: String::new(),
            family_id: String::new(),
            auth_time: 0,
            decided_at: None,
        }
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for NewDeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDeviceCode")
            .field("device_code_hash", &REDACTED)
            .field("user_code", &self.user_code)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("interval_secs", &self.interval_secs)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for DeviceCodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCodeRecord")
            .field("device_code_hash", &REDACTED)
            .field("user_code", &self.user_code)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("interval_secs", &self.interval_secs)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("status", &self.status)
            .field("last_polled_at", &self.last_polled_at)
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("family_id", &self.family_id)
            .field("auth_time", &self.auth_time)
            .field("decided_at", &self.decided_at)
            .finish()
    }
}

/// What a poll does to the code it found; shared by the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollStep {
    /// Answer with the code unchanged.
    Unchanged(Answer),
    /// Store `interval_secs`, `status` and `last_polled_at` = now, then answer with the updated code.
    Update {
        interval_secs: i64,
        status: DeviceStatus,
        answer: Answer,
    },
}

/// The [`DevicePoll`] variant a poll answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Expired,
    SlowDown,
    Pending,
    Denied,
    Redeemed,
    AlreadyRedeemed,
}

impl Answer {
    pub(crate) fn with(self, code: DeviceCodeRecord) -> DevicePoll {
        match self {
            Answer::Expired => DevicePoll::Expired(code),
            Answer::SlowDown => DevicePoll::SlowDown(code),
            Answer::Pending => DevicePoll::Pending(code),
            Answer::Denied => DevicePoll::Denied(code),
            Answer::Redeemed => DevicePoll::Redeemed(code),
            Answer::AlreadyRedeemed => DevicePoll::AlreadyRedeemed(code),
        }
    }
}

/// Decides a poll of `code` at `now`, in the order documented on [`DeviceStore::poll_device_code`].
pub(crate) fn poll_step(code: &DeviceCodeRecord, now: i64) -> PollStep {
    if code.status == DeviceStatus::Redeemed {
        return PollStep::Unchanged(Answer::AlreadyRedeemed);
    }
    if code.expires_at <= now {
        return PollStep::Unchanged(Answer::Expired);
    }
    if let Some(last) = code.last_polled_at
        && now < last.saturating_add(code.interval_secs)
    {
        return PollStep::Update {
            interval_secs: code.interval_secs.saturating_add(SLOW_DOWN_STEP_SECS),
            status: code.status,
            answer: Answer::SlowDown,
        };
    }
    let (status, answer) = match code.status {
        DeviceStatus::Pending => (DeviceStatus::Pending, Answer::Pending),
        DeviceStatus::Denied => (DeviceStatus::Denied, Answer::Denied),
        // Redeemed was answered above.
        DeviceStatus::Approved | DeviceStatus::Redeemed => {
            (DeviceStatus::Redeemed, Answer::Redeemed)
        }
    };
    PollStep::Update {
        interval_secs: code.interval_secs,
        status,
        answer,
    }
}

/// The fields a decision writes: status, and the approval's fields (empty for a denial).
pub(crate) fn decision_fields(
    approval: Option<&DeviceApproval>,
) -> (DeviceStatus, &str, &str, &str, i64) {
    match approval {
        Some(a) => (
            DeviceStatus::Approved,
            &a.subject,
            &a.username,
            &a.family_id,
            a.auth_time,
        ),
        None => (DeviceStatus::Denied, "", "", "", 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_code() -> NewDeviceCode {
        NewDeviceCode {
            device_code_hash: "deadbeef".into(),
            user_code: "BCDFGHJK".into(),
            client_id: "flytectl".into(),
            scopes: vec![],
            audience: vec![],
            interval_secs: 5,
            created_at: 100,
            expires_at: 700,
        }
    }

    fn record(status: DeviceStatus, last_polled_at: Option<i64>) -> DeviceCodeRecord {
        DeviceCodeRecord {
            status,
            last_polled_at,
            ..new_code().to_record()
        }
    }

    /// Applies a step the way the backends do.
    fn apply(code: DeviceCodeRecord, now: i64) -> DevicePoll {
        match poll_step(&code, now) {
            PollStep::Unchanged(answer) => answer.with(code),
            PollStep::Update {
                interval_secs,
                status,
                answer,
            } => answer.with(DeviceCodeRecord {
                interval_secs,
                status,
                last_polled_at: Some(now),
                ..code
            }),
        }
    }

    #[test]
    fn debug_never_shows_the_device_code_hash() {
        for text in [
            format!("{:?}", new_code()),
            format!("{:?}", new_code().to_record()),
        ] {
            assert!(!text.contains("deadbeef"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
            assert!(text.contains("BCDFGHJK"), "{text}");
        }
    }

    #[test]
    fn status_names_roundtrip() {
        for status in DeviceStatus::ALL {
            assert_eq!(DeviceStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(DeviceStatus::parse("Pending"), None);
        assert!(decode_status("").is_err());
    }

    #[test]
    fn polls_follow_the_documented_order() {
        use DeviceStatus::*;
        // Redeemed wins over expiry, expiry over slow-down.
        let redeemed = record(Redeemed, Some(699));
        assert_eq!(
            apply(redeemed.clone(), 1000),
            DevicePoll::AlreadyRedeemed(redeemed)
        );
        let expired = record(Approved, Some(699));
        assert_eq!(apply(expired.clone(), 700), DevicePoll::Expired(expired));

        // Too soon after the last poll, whatever the status: the interval grows.
        for status in [Pending, Approved, Denied] {
            let slow = apply(record(status, Some(200)), 204);
            assert_eq!(
                slow,
                DevicePoll::SlowDown(DeviceCodeRecord {
                    interval_secs: 10,
                    last_polled_at: Some(204),
                    ..record(status, None)
                })
            );
        }
        // Exactly one interval later is soon enough.
        assert!(matches!(
            apply(record(Pending, Some(200)), 205),
            DevicePoll::Pending(DeviceCodeRecord {
                last_polled_at: Some(205),
                interval_secs: 5,
                ..
            })
        ));
        assert!(matches!(
            apply(record(Pending, None), 100),
            DevicePoll::Pending(_)
        ));
        assert!(matches!(
            apply(record(Denied, None), 100),
            DevicePoll::Denied(DeviceCodeRecord { status: Denied, .. })
        ));
        assert!(matches!(
            apply(record(Approved, None), 100),
            DevicePoll::Redeemed(DeviceCodeRecord {
                status: Redeemed,
                last_polled_at: Some(100),
                ..
            })
        ));
        // No overflow at the edges.
        let huge = DeviceCodeRecord {
            interval_secs: i64::MAX,
            expires_at: i64::MAX,
            ..record(Pending, Some(i64::MAX - 1))
        };
        assert!(matches!(
            apply(huge, i64::MAX - 1),
            DevicePoll::SlowDown(DeviceCodeRecord {
                interval_secs: i64::MAX,
                ..
            })
        ));
    }
}
