//! Host names: normalising what clients send and checking what Ingresses declare.

/// A host as declared in an Ingress rule or TLS entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// A precise, lower-case DNS name.
    Exact(String),
    /// `*.suffix`: matches exactly one label in front of the lower-case `suffix`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses an Ingress host (`foo.bar.com` or `*.bar.com`); the error says what is wrong.
    pub fn parse(host: &str) -> Result<Self, String> {
        let lower = host.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        if let Some(suffix) = lower.strip_prefix("*.") {
            check_dns_name(suffix).map_err(|e| format!("wildcard host {host:?}: {e}"))?;
            return Ok(HostPattern::Wildcard(suffix.to_owned()));
        }
        if lower.contains('*') {
            return Err(format!(
                "host {host:?}: a wildcard must be the whole first label, as in *.example.com"
            ));
        }
        check_dns_name(lower).map_err(|e| format!("host {host:?}: {e}"))?;
        Ok(HostPattern::Exact(lower.to_owned()))
    }

    /// Whether a normalised request host matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => wildcard_parent(host) == Some(suffix.as_str()),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// The part of `host` a one-label wildcard would be keyed on: `a.b.c` → `b.c`.
pub fn wildcard_parent(host: &str) -> Option<&str> {
    let (first, rest) = host.split_once('.')?;
    (!first.is_empty() && !rest.is_empty()).then_some(rest)
}

fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label must be 1 to 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label may not start or end with '-'".into());
        }
    }
    Ok(())
}

/// Why a request's Host cannot be used for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHost;

/// Normalises a request `Host` / `:authority`: port removed, one trailing dot removed,
/// lower-cased. Returns `BadHost` for characters no host may contain.
pub fn normalize_request_host(raw: &str) -> Result<String, BadHost> {
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content, drop the port.
        let end = rest.find(']').ok_or(BadHost)?;
        let after = &rest[end + 1..];
        if !(after.is_empty()
            || after.starts_with(':') && after[1..].bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(BadHost);
        }
        return Ok(rest[..end].to_ascii_lowercase());
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return Err(BadHost),
            None => raw,
        }
    };
    let h = without_port.strip_suffix('.').unwrap_or(without_port);
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(BadHost);
    }
    Ok(h.to_ascii_lowercase())
}
