//! Pure timing decisions: when to renew, how long to back off, how to classify a failure.

use std::time::{Duration, SystemTime};

/// When to renew a certificate valid from `not_before` to `not_after` (unix seconds): at 2/3
/// of the lifetime (1/2 under 10 days), and never later than `renew_before` ahead of expiry.
pub fn renewal_time(not_before: i64, not_after: i64, renew_before: Option<Duration>) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let backstop = if lifetime < 10 * 86_400 {
        not_before + lifetime / 2
    } else {
        not_before + lifetime * 2 / 3
    };
    match renew_before {
        Some(rb) if (rb.as_secs() as i64) < lifetime => {
            backstop.min(not_after - rb.as_secs() as i64)
        }
        _ => backstop,
    }
}

/// Wait after the `attempts`-th consecutive failure: base, ×10, ×100, then one day (capped).
pub fn backoff(attempts: i64, base: Duration) -> Duration {
    let factor = match attempts {
        ..=1 => 1,
        2 => 10,
        3 => 100,
        _ => u32::MAX,
    };
    base.saturating_mul(factor).min(Duration::from_secs(86_400))
}

/// The shortest wait a `Retry-After` can impose: `0` or a past date must not make a hot loop.
pub const RETRY_AFTER_FLOOR: Duration = Duration::from_secs(5);

/// The longest wait a `Retry-After` can impose, as the longest class backoff: a wrong or
/// absurd value costs at most one early attempt a day, which the CA answers with a new
/// `Retry-After`. (Let's Encrypt's longest limits refill within days, so a real value above a
/// day is possible; one extra rejected order a day is harmless.)
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(86_400);

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): `delay-seconds` or an HTTP-date, the
/// latter relative to `now` (zero when past). `None` for anything else, e.g. `-5` or `soon`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large for u64 is still a valid (huge) delay.
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// When to try again after the CA answered at `answered` with `Retry-After: delay`: the delay
/// held between [`RETRY_AFTER_FLOOR`] and [`RETRY_AFTER_CEILING`].
pub fn retry_after_time(answered: SystemTime, delay: Duration) -> SystemTime {
    answered + delay.clamp(RETRY_AFTER_FLOOR, RETRY_AFTER_CEILING)
}

/// Why an issuance failed; decides the retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Connection errors, 5xx, bad nonces: retry soon.
    Transient,
    /// `rateLimited`: wait for Retry-After.
    RateLimited,
    /// The CA could not validate a challenge.
    Validation,
    /// The CA refuses the request as such (identifier, CSR, profile): retry only after a spec change.
    Policy,
}

impl FailureClass {
    /// The name shown in conditions and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "Transient",
            FailureClass::RateLimited => "RateLimited",
            FailureClass::Validation => "ValidationFailed",
            FailureClass::Policy => "Policy",
        }
    }

    /// Classifies an ACME problem type URN (`urn:ietf:params:acme:error:<type>`).
    pub fn from_problem_type(ty: &str) -> Self {
        let t = ty.rsplit(':').next().unwrap_or(ty);
        match t {
            "rateLimited" => FailureClass::RateLimited,
            "connection" | "dns" | "unauthorized" | "incorrectResponse" | "caa" | "tls" => {
                FailureClass::Validation
            }
            "rejectedIdentifier"
            | "badCSR"
            | "unsupportedIdentifier"
            | "invalidProfile"
            | "badSignatureAlgorithm"
            | "malformed" => FailureClass::Policy,
            _ => FailureClass::Transient,
        }
    }
}

/// Parses a cert-manager style duration: `2160h`, `90m`, `45s`, `1h30m`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        any = true;
    }
    (num.is_empty() && any).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn renews_at_two_thirds_of_a_90_day_lifetime() {
        assert_eq!(renewal_time(0, 90 * DAY, None), 60 * DAY);
    }

    #[test]
    fn renews_at_half_of_a_lifetime_under_ten_days() {
        assert_eq!(renewal_time(1000, 1000 + 6 * DAY, None), 1000 + 3 * DAY);
    }

    #[test]
    fn renew_before_is_an_upper_bound() {
        // 90 days, renewBefore 40 days → day 50, earlier than the 2/3 point.
        assert_eq!(
            renewal_time(0, 90 * DAY, Some(Duration::from_secs(40 * DAY as u64))),
            50 * DAY
        );
        // renewBefore 10 days → the 2/3 point (day 60) is earlier and wins.
        assert_eq!(
            renewal_time(0, 90 * DAY, Some(Duration::from_secs(10 * DAY as u64))),
            60 * DAY
        );
    }

    #[test]
    fn renew_before_longer_than_the_lifetime_is_ignored() {
        assert_eq!(
            renewal_time(0, 90 * DAY, Some(Duration::from_secs(100 * DAY as u64))),
            60 * DAY
        );
    }

    #[test]
    fn backoff_grows_tenfold_then_caps_at_a_day() {
        let m = Duration::from_secs(60);
        assert_eq!(backoff(1, m), Duration::from_secs(60));
        assert_eq!(backoff(2, m), Duration::from_secs(600));
        assert_eq!(backoff(3, m), Duration::from_secs(6000));
        assert_eq!(backoff(4, m), Duration::from_secs(86_400));
        assert_eq!(backoff(40, m), Duration::from_secs(86_400));
    }

    #[test]
    fn problem_types_are_classified() {
        let c = FailureClass::from_problem_type;
        assert_eq!(
            c("urn:ietf:params:acme:error:rateLimited"),
            FailureClass::RateLimited
        );
        assert_eq!(
            c("urn:ietf:params:acme:error:connection"),
            FailureClass::Validation
        );
        assert_eq!(
            c("urn:ietf:params:acme:error:incorrectResponse"),
            FailureClass::Validation
        );
        assert_eq!(
            c("urn:ietf:params:acme:error:rejectedIdentifier"),
            FailureClass::Policy
        );
        assert_eq!(
            c("urn:ietf:params:acme:error:serverInternal"),
            FailureClass::Transient
        );
    }

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn retry_after_delay_seconds_are_a_wait_from_now() {
        let now = at(1_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn retry_after_http_dates_are_relative_to_now_in_all_three_formats() {
        // 1994-11-06T08:49:37Z is unix 784111777 (RFC 9110's example date).
        let now = at(784_111_777 - 90);
        let ninety = Some(Duration::from_secs(90));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            ninety
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            ninety
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), ninety);
    }

    #[test]
    fn retry_after_in_the_past_means_no_wait() {
        let now = at(784_111_777 + 3600);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_and_negative_values_are_ignored() {
        let now = at(1_000_000);
        for v in [
            "",
            " ",
            "-5",
            "+5",
            "1.5",
            "5s",
            "soon",
            "0x10",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }

    #[test]
    fn retry_after_time_is_held_between_floor_and_ceiling() {
        let t = at(1_000_000);
        assert_eq!(
            retry_after_time(t, Duration::from_secs(7)),
            t + Duration::from_secs(7)
        );
        assert_eq!(retry_after_time(t, Duration::ZERO), t + RETRY_AFTER_FLOOR);
        assert_eq!(retry_after_time(t, Duration::MAX), t + RETRY_AFTER_CEILING);
    }

    #[test]
    fn go_durations_parse_like_cert_manager() {
        assert_eq!(
            parse_go_duration("2160h"),
            Some(Duration::from_secs(2160 * 3600))
        );
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("45s"), Some(Duration::from_secs(45)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("5d"), None);
    }
}
