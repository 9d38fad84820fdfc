//! Request paths: the dot-segment check and the keys Prefix matching is done on.

/// How a path rule matches (ImplementationSpecific is compiled as `Prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// The whole path must be equal.
    Exact,
    /// Element-wise prefix on `/` boundaries.
    Prefix,
}

/// The key a Prefix path is stored under: trailing slashes removed, so `/` becomes ``.
pub fn prefix_key(path: &str) -> &str {
    path.trim_end_matches('/')
}

/// The candidate Prefix keys for a request path, longest first: `/a/b` → `/a/b`, `/a`, ``.
pub fn prefix_candidates(path: &str) -> impl Iterator<Item = &str> {
    let full = (!path.ends_with('/')).then_some(path);
    full.into_iter()
        .chain(path.rmatch_indices('/').map(move |(i, _)| &path[..i]))
}

/// Whether a request path holds a `.` or `..` segment, plain or percent-encoded (`%2e`,
/// with `/`, `%2f`, `\\` and `%5c` all counted as separators); such requests are refused
/// before routing.
pub fn has_dot_segment(path: &str) -> bool {
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    let decoded;
    let path = if path.contains('%') {
        decoded = decode_dots_and_slashes(path);
        decoded.as_str()
    } else {
        path
    };
    path.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
}

/// Decodes only `%2e`, `%2f` and `%5c` (any case), which is all the dot-segment check needs.
fn decode_dots_and_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).map(str::to_ascii_lowercase);
        match code.as_deref() {
            Some("2e") => out.push('.'),
            Some("2f") => out.push('/'),
            Some("5c") => out.push('\\'),
            _ => {
                out.push('%');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}
