//! The import rules of the architecture, checked by reading the source text:
//!
//! - `routes` is pure: no kube client, no tokio, no hyper, no rustls;
//! - `proxy` knows nothing of Kubernetes;
//! - `tls` knows nothing of Kubernetes nor of where certificates come from (`crate::source`);
//! - only `app` spawns tasks, apart from the per-connection and per-request tasks listed in
//!   `SPAWN_EXCEPTIONS`.
//!
//! The checks look at paths (`use` trees flattened, `crate::`, `self::` and `super::` resolved)
//! and never at comments or literals, so `"kubernetes.io/tls"` or a doc comment naming tokio
//! is not a violation. The `checker_*` tests show that each rule does catch what it forbids.

use std::fmt;
use std::path::Path;

/// Files other than `src/app.rs` that may start tasks: how many spawn calls each, and why.
const SPAWN_EXCEPTIONS: &[(&str, usize, &str)] = &[
    (
        "src/proxy/listener.rs",
        1,
        "one task per accepted connection, tracked and drained on shutdown",
    ),
    (
        "src/proxy/service.rs",
        1,
        "one tunnel task per upgraded request (WebSocket), ends when either side closes",
    ),
    (
        "src/acme/issuer.rs",
        1,
        "one task per certificate being issued, at most four, aborted when leadership is lost",
    ),
    (
        "src/proxy/pool.rs",
        3,
        "upstream pool: one driver task per upstream connection and the idle-connection reaper",
    ),
    (
        "src/proxy/h2_send.rs",
        1,
        "hyper's task per HTTP/2 stream (hyper asks its executor), ended by its stream or the send timeout",
    ),
    (
        "src/admin.rs",
        1,
        "one task per admin connection, ended by the shutdown signal",
    ),
    (
        "src/echo.rs",
        2,
        "the demo/test backend: one task per connection and one per WebSocket",
    ),
];

#[test]
fn routes_imports_no_network_or_runtime_crates() {
    let found = forbidden_crates(
        &sources("src/routes"),
        &["kube", "tokio", "hyper", "rustls"],
    );
    assert_none(
        "src/routes must stay pure: no kube client, tokio, hyper or rustls",
        found,
    );
}

#[test]
fn proxy_imports_nothing_kubernetes() {
    let found = forbidden_crates(&sources("src/proxy"), &["k8s_openapi", "kube"]);
    assert_none(
        "src/proxy knows nothing of Kubernetes: it is given a route table and a certificate store",
        found,
    );
}

#[test]
fn tls_imports_nothing_kubernetes_nor_certificate_sources() {
    let files = sources("src/tls");
    let mut found = forbidden_crates(&files, &["k8s_openapi", "kube"]);
    found.extend(forbidden_modules(&files, &["source"]));
    assert_none(
        "src/tls does not know where certificates come from (no Kubernetes types, no crate::source)",
        found,
    );
}

#[test]
fn only_app_spawns_tasks() {
    let files = sources("src");
    for (path, _, _) in SPAWN_EXCEPTIONS {
        assert!(
            files.iter().any(|f| f.path == *path),
            "SPAWN_EXCEPTIONS names {path}, which no longer exists: remove the entry"
        );
    }
    assert_none(
        "only src/app.rs spawns tasks (each exception is listed, with its reason, in SPAWN_EXCEPTIONS)",
        spawns_outside_app(&files),
    );
}

// ---------------------------------------------------------------------------------------------
// The checker checks itself: each rule catches what it forbids, and nothing else.
// ---------------------------------------------------------------------------------------------

fn source(path: &str, text: &str) -> Source {
    Source {
        path: path.to_owned(),
        text: text.to_owned(),
    }
}

fn lines(found: &[Finding]) -> Vec<usize> {
    found.iter().map(|f| f.line).collect()
}

#[test]
fn checker_flags_forbidden_crates_in_use_lines_paths_and_attributes() {
    let text = "\
use tokio::sync::Mutex;
use {std::io, hyper_util::rt::TokioIo};
use ::rustls as tls;
pub(crate) use kube_runtime::watcher;
#[tokio::test]
async fn f() { let _ = hyper::Error::default(); }
fn g() { tokio::select! {} }
use {kube::Client};
extern crate rustls_pki_types;
";
    let found = forbidden_crates(
        &[source("src/routes/x.rs", text)],
        &["kube", "tokio", "hyper", "rustls"],
    );
    assert_eq!(lines(&found), [1, 2, 3, 4, 5, 6, 7, 8, 9], "{found:?}");
}

#[test]
fn checker_ignores_comments_literals_and_lookalike_names() {
    let text = r####"
//! Knows nothing of tokio::spawn or kube::Client.
/* a block /* nested */ comment: hyper::Body */
const TYPE: &str = "kubernetes.io/tls";
const RAW: &str = r#"use tokio::net;"#;
const BYTES: &[u8] = br##"hyper::"##;
const C: char = '"';
const Q: char = '\'';
fn life<'tokio>(x: &'tokio str) -> &'tokio str { x }
use hyperlink::Thing;
use crate::routes::hyper_ish;
fn h(kube: u8) -> u8 { kube }
fn i() { let tokio = 1; let _ = tokio; }
"####;
    let found = forbidden_crates(
        &[source("src/routes/x.rs", text)],
        &["kube", "tokio", "hyper", "rustls"],
    );
    assert_eq!(found, [], "{found:?}");
}

#[test]
fn checker_resolves_relative_and_grouped_paths_to_crate_modules() {
    let store = "\
use crate::{routes::HostPattern, source::dir::DirSource};
use super::super::source;
use super::material;
fn f() { crate::source::dir::scan(); }
mod tests {
    use super::super::super::source::Snapshot;
    use super::super::source::Nothing;
}
";
    let mod_rs = "use self::source::Local;\nuse super::source::Snapshot;\n";
    let found = forbidden_modules(
        &[
            source("src/tls/store.rs", store),
            source("src/tls/mod.rs", mod_rs),
        ],
        &["source"],
    );
    let at: Vec<_> = found.iter().map(|f| (f.path.as_str(), f.line)).collect();
    assert_eq!(
        at,
        [
            ("src/tls/store.rs", 1),
            ("src/tls/store.rs", 2),
            ("src/tls/store.rs", 4),
            ("src/tls/store.rs", 6),
            ("src/tls/mod.rs", 2),
        ],
        "{found:?}"
    );
}

#[test]
fn checker_counts_every_spawn_outside_app_but_not_in_test_code() {
    let text = "\
use tokio::spawn;
fn spawn_workers() {}
fn a() { tokio::spawn(async {}); }
fn b(t: &TaskTracker) { t.spawn(async {}); }
fn c() { tokio::task::spawn_blocking(|| ()); }
// tokio::spawn in a comment
mod tests {
    fn d() { tokio::spawn(async {}); }
}
";
    let files = [
        source("src/proxy/x.rs", text),
        source("src/app.rs", "fn a() { tokio::spawn(async {}); }"),
        source("src/proxy/tests.rs", "fn a() { tokio::spawn(async {}); }"),
        source(
            "src/admin.rs",
            "fn a() { tokio::spawn(async {}); }\nfn b() { tokio::spawn(async {}); }",
        ),
    ];
    let found = spawns_outside_app(&files);
    let at: Vec<_> = found.iter().map(|f| (f.path.as_str(), f.line)).collect();
    assert_eq!(
        at,
        [
            ("src/proxy/x.rs", 1),
            ("src/proxy/x.rs", 3),
            ("src/proxy/x.rs", 4),
            ("src/proxy/x.rs", 5),
            // One spawn is allowed in admin.rs; two are reported, as the exception is exceeded.
            ("src/admin.rs", 1),
            ("src/admin.rs", 2),
        ],
        "{found:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

/// One Rust file: its path from the package root (with `/`) and its text.
struct Source {
    path: String,
    text: String,
}

/// One rule broken at one place.
#[derive(Debug, PartialEq)]
struct Finding {
    path: String,
    line: usize,
    what: String,
    code: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}\n    {}",
            self.path, self.line, self.what, self.code
        )
    }
}

fn finding(src: &Source, line: usize, what: String) -> Finding {
    let code = src
        .text
        .lines()
        .nth(line - 1)
        .unwrap_or("")
        .trim()
        .to_owned();
    Finding {
        path: src.path.clone(),
        line,
        what,
        code,
    }
}

fn assert_none(rule: &str, found: Vec<Finding>) {
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(Finding::to_string).collect();
        panic!("{rule}:\n{}", list.join("\n"));
    }
}

/// Whether `name` is the crate `family` or one named after it (`tokio` → `tokio_util`).
fn in_family(name: &str, family: &str) -> bool {
    name.strip_prefix(family)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
}

/// Every path into one of the crate families `families`.
fn forbidden_crates(files: &[Source], families: &[&str]) -> Vec<Finding> {
    let mut found = Vec::new();
    for src in files {
        for p in path_refs(src) {
            let Target::External(segs) = resolve(&p) else {
                continue;
            };
            // A lone name outside `use` is a local variable or item, not a crate.
            if segs.len() < 2 && !p.in_use {
                continue;
            }
            let root = &segs[0];
            if let Some(family) = families.iter().find(|f| in_family(root, f)) {
                found.push(finding(
                    src,
                    p.line,
                    format!("uses crate `{root}` ({family})"),
                ));
            }
        }
    }
    found
}

/// Every path into one of the top-level modules of this crate named in `modules`.
fn forbidden_modules(files: &[Source], modules: &[&str]) -> Vec<Finding> {
    let mut found = Vec::new();
    for src in files {
        for p in path_refs(src) {
            if let Target::Crate(segs) = resolve(&p)
                && let Some(m) = segs.first().filter(|m| modules.contains(&m.as_str()))
            {
                found.push(finding(src, p.line, format!("uses `crate::{m}`")));
            }
        }
    }
    found
}

/// Every spawn (`tokio::spawn`, `spawn_blocking`, `TaskTracker::spawn`, ...) outside
/// `src/app.rs` and test code, beyond what `SPAWN_EXCEPTIONS` allows for the file.
fn spawns_outside_app(files: &[Source]) -> Vec<Finding> {
    let mut found = Vec::new();
    for src in files {
        if src.path == "src/app.rs" || is_test_file(&src.path) {
            continue;
        }
        let spawns: Vec<Finding> = path_refs(src)
            .into_iter()
            .filter(|p| !p.module.iter().any(|m| m == "tests"))
            .filter_map(|p| {
                let last = p.segs.last()?;
                (last == "spawn" || last.starts_with("spawn_"))
                    .then(|| finding(src, p.line, format!("spawns with `{}`", p.segs.join("::"))))
            })
            .collect();
        let allowed = SPAWN_EXCEPTIONS
            .iter()
            .find(|(path, _, _)| *path == src.path)
            .map_or(0, |(_, n, _)| *n);
        if spawns.len() > allowed {
            found.extend(spawns.into_iter().map(|mut f| {
                f.what = format!("{} ({allowed} allowed in this file)", f.what);
                f
            }));
        }
    }
    found
}

fn is_test_file(path: &str) -> bool {
    path.ends_with("/tests.rs") || path.contains("/tests/")
}

// ---------------------------------------------------------------------------------------------
// Reading the source tree
// ---------------------------------------------------------------------------------------------

/// Every `.rs` file below `dir` (relative to the package root), sorted by path.
fn sources(dir: &str) -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let rel = path.strip_prefix(root).expect("below the package root");
                let rel: Vec<_> = rel.iter().map(|c| c.to_string_lossy()).collect();
                out.push(Source {
                    path: rel.join("/"),
                    text,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(!out.is_empty(), "no Rust files below {dir}");
    out
}

/// The module a file defines: `src/tls/store.rs` → `tls::store`, `src/tls/mod.rs` → `tls`.
fn file_module(path: &str) -> Vec<String> {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segs: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

// ---------------------------------------------------------------------------------------------
// A small Rust lexer: identifiers, `::` and punctuation survive; comments and literals do not.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    /// A string, character or number literal; its content is never looked at.
    Literal,
    Punct(char),
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

fn lex(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let (ch, start_line) = (c[i], line);
        let tok = match ch {
            '\n' => {
                line += 1;
                i += 1;
                continue;
            }
            _ if ch.is_whitespace() => {
                i += 1;
                continue;
            }
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        line += usize::from(c[i] == '\n');
                        i += 1;
                    }
                }
                continue;
            }
            '"' => {
                i = skip_string(&c, i, &mut line);
                Tok::Literal
            }
            '\'' if at(i + 1) == '\\' => {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                Tok::Literal
            }
            '\'' if at(i + 2) == '\'' => {
                i += 3;
                Tok::Literal
            }
            ':' if at(i + 1) == ':' => {
                i += 2;
                Tok::PathSep
            }
            _ if ch.is_ascii_digit() => {
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                Tok::Literal
            }
            _ if ch == '_' || ch.is_alphabetic() => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                match (word.as_str(), at(i)) {
                    ("r" | "br" | "cr", '"' | '#') => {
                        let hashes = c[i..].iter().take_while(|&&h| h == '#').count();
                        if at(i + hashes) == '"' {
                            i = skip_raw_string(&c, i + hashes, hashes, &mut line);
                            Tok::Literal
                        } else if word == "r" && hashes == 1 {
                            // A raw identifier keeps its `r#`: it is never a keyword or crate.
                            let start = i + 1;
                            i = start;
                            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                                i += 1;
                            }
                            Tok::Ident(format!("r#{}", c[start..i].iter().collect::<String>()))
                        } else {
                            Tok::Ident(word)
                        }
                    }
                    ("b" | "c", '"') => {
                        i = skip_string(&c, i, &mut line);
                        Tok::Literal
                    }
                    ("b", '\'') => {
                        i += 1;
                        if at(i) == '\\' {
                            i += 1;
                        }
                        i += 1;
                        while i < c.len() && c[i] != '\'' {
                            i += 1;
                        }
                        i += 1;
                        Tok::Literal
                    }
                    _ => Tok::Ident(word),
                }
            }
            _ => {
                i += 1;
                Tok::Punct(ch)
            }
        };
        out.push(Token {
            tok,
            line: start_line,
        });
    }
    out
}

/// Skips a `"..."` literal starting at the quote at `i`; returns the index after it.
fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    i += 1;
    while i < c.len() {
        match c[i] {
            '\\' => {
                *line += usize::from(c.get(i + 1) == Some(&'\n'));
                i += 2;
            }
            '"' => return i + 1,
            ch => {
                *line += usize::from(ch == '\n');
                i += 1;
            }
        }
    }
    i
}

/// Skips a raw string whose opening quote is at `i`, closed by a quote and `hashes` `#`s.
fn skip_raw_string(c: &[char], mut i: usize, hashes: usize, line: &mut usize) -> usize {
    i += 1;
    while i < c.len() {
        if c[i] == '"'
            && c[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&h| h == '#')
                .count()
                == hashes
        {
            return i + 1 + hashes;
        }
        *line += usize::from(c[i] == '\n');
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// Paths: every `a::b::c` in a file, `use` trees flattened, with the module it is written in.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct PathRef {
    /// The segments as written (a leading `::` dropped).
    segs: Vec<String>,
    /// Line of the last segment.
    line: usize,
    /// Written in a `use` item or `extern crate`.
    in_use: bool,
    /// The module the path is written in (file module plus inline `mod x { }` blocks).
    module: Vec<String>,
}

/// Where a path leads.
enum Target {
    /// A module or item of this crate, from the crate root.
    Crate(Vec<String>),
    /// Anything else; the first segment is an extern crate, a prelude name or a local name.
    External(Vec<String>),
}

fn resolve(p: &PathRef) -> Target {
    let mut segs = p.segs.clone();
    if segs.len() > 1 && segs.last().is_some_and(|s| s == "self") {
        segs.pop();
    }
    match segs.first().map(String::as_str) {
        Some("crate") => Target::Crate(segs[1..].to_vec()),
        Some("self") => Target::Crate([&p.module[..], &segs[1..]].concat()),
        Some("super") => {
            let ups = segs.iter().take_while(|s| *s == "super").count();
            let base = &p.module[..p.module.len().saturating_sub(ups)];
            Target::Crate([base, &segs[ups..]].concat())
        }
        _ => Target::External(segs),
    }
}

fn path_refs(src: &Source) -> Vec<PathRef> {
    let toks = lex(&src.text);
    let ident = |i: usize| match toks.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, want: &Tok| toks.get(i).is_some_and(|t| t.tok == *want);
    let base = file_module(&src.path);
    // Inline modules: (name, brace depth outside their body).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let module = || -> Vec<String> {
            base.iter()
                .cloned()
                .chain(inline.iter().map(|(m, _)| m.clone()))
                .collect()
        };
        match &toks[i].tok {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
            }
            Tok::Ident(kw) if kw == "mod" => match (ident(i + 1), is(i + 2, &Tok::Punct('{'))) {
                (Some(name), true) => {
                    inline.push((name.to_owned(), depth));
                    depth += 1;
                    i += 3;
                }
                _ => i += 2,
            },
            // A function's own name is not a use of anything.
            Tok::Ident(kw) if kw == "fn" => i += 2,
            Tok::Ident(kw) if kw == "extern" && ident(i + 1) == Some("crate") => {
                if let Some(name) = ident(i + 2) {
                    out.push(PathRef {
                        segs: vec![name.to_owned()],
                        line: toks[i + 2].line,
                        in_use: true,
                        module: module(),
                    });
                }
                i += 3;
            }
            Tok::Ident(kw) if kw == "use" => {
                let mut trees = Vec::new();
                i = use_tree(&toks, i + 1, &[], &mut trees);
                let m = module();
                out.extend(trees.into_iter().map(|(segs, line)| PathRef {
                    segs,
                    line,
                    in_use: true,
                    module: m.clone(),
                }));
            }
            Tok::Ident(_) | Tok::PathSep => {
                let mut segs = Vec::new();
                let mut line = toks[i].line;
                if is(i, &Tok::PathSep) {
                    i += 1;
                }
                while let Some(s) = ident(i) {
                    segs.push(s.to_owned());
                    line = toks[i].line;
                    i += 1;
                    if !(is(i, &Tok::PathSep) && ident(i + 1).is_some()) {
                        break;
                    }
                    i += 1;
                }
                if segs.is_empty() {
                    continue;
                }
                out.push(PathRef {
                    segs,
                    line,
                    in_use: false,
                    module: module(),
                });
            }
            _ => i += 1,
        }
    }
    out
}

/// Flattens the use tree starting at `i` into `out` (segments, line); returns the index after it.
fn use_tree(
    toks: &[Token],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut path = prefix.to_vec();
    if toks.get(i).is_some_and(|t| t.tok == Tok::PathSep) {
        i += 1;
    }
    while let Some(t) = toks.get(i) {
        match &t.tok {
            Tok::Ident(s) => {
                path.push(s.clone());
                i += 1;
                if toks.get(i).is_some_and(|t| t.tok == Tok::PathSep) {
                    i += 1;
                    continue;
                }
                if toks
                    .get(i)
                    .is_some_and(|t| t.tok == Tok::Ident("as".into()))
                {
                    i += 2;
                }
                out.push((path, t.line));
                return i;
            }
            Tok::Punct('*') => {
                out.push((path, t.line));
                return i + 1;
            }
            Tok::Punct('{') => {
                i += 1;
                while let Some(t) = toks.get(i) {
                    match t.tok {
                        Tok::Punct('}') => return i + 1,
                        Tok::Punct(',') => i += 1,
                        _ => {
                            let next = use_tree(toks, i, &path, out);
                            i = if next == i { i + 1 } else { next };
                        }
                    }
                }
                return i;
            }
            _ => return i,
        }
    }
    i
}
