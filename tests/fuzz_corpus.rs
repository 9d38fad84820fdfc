//! The fast, stable-Rust part of fuzzing: every file of the committed corpus
//! (`fuzz/corpus/<target>/`) is replayed through the same target functions cargo-fuzz runs
//! (`fuzz/src/lib.rs`), then a seeded, bounded mutation loop explores around it. A panic is
//! a finding; the failing input is written to `target/fuzz-findings/` to be added to the corpus.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutations per target are capped by count and by time, whichever comes first.
const BUDGET: Duration = Duration::from_secs(15);

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// xorshift64*: deterministic, so a failure reproduces with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that matter to the parsers under test, spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\0",
    b"---\n",
    b"*.",
    b"..",
    b"%2e",
    b"%2F",
    b"/",
    b":",
    b"'",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"- ",
    b"  ",
    b"\t",
    b"\xff",
    b"\xc3\xa9",
    b"Exact",
    b"Prefix",
    b"ImplementationSpecific",
    b"kind: Ingress\n",
    b"kind: Service\n",
    b"kind: Secret\n",
    b"kind: EndpointSlice\n",
    b"kind: List\n",
    b"host: ",
    b"path: ",
    b"number: ",
    b"name: ",
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"-----BEGIN PRIVATE KEY-----\n",
    b"-----BEGIN EC PRIVATE KEY-----\n",
    b"MII",
    b"=",
    b"99999999999999999999",
    b"-1",
    b"0",
    b"65536",
    b"&a",
    b"*a",
    b"!!binary ",
    b"<<: ",
];

fn mutate(rng: &mut Rng, input: &[u8], pool: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, t.iter().copied());
            }
            3 if !out.is_empty() => {
                // Duplicate a slice (repeated keys, documents, PEM blocks).
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(256)).min(out.len());
                let piece = out[start..end].to_vec();
                out.splice(at..at, piece);
            }
            4 if !pool.is_empty() => {
                // Splice a piece of another corpus entry.
                let other = &pool[rng.below(pool.len())].1;
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(512)).min(other.len());
                    out.truncate(at);
                    out.extend_from_slice(&other[start..end]);
                }
            }
            5 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            _ => out.insert(at, b" \n:-0a/*"[rng.below(8)]),
        }
    }
    out.truncate(64 * 1024);
    out
}

/// Replays the corpus, then mutates it for at most `iterations` runs or `BUDGET`.
fn run(target: &str, f: fn(&[u8]), iterations: usize) {
    let pool = corpus(target);
    assert!(!pool.is_empty(), "fuzz/corpus/{target} is empty");
    for (path, bytes) in &pool {
        check(target, f, bytes, &format!("corpus file {}", path.display()));
    }
    let mut rng = Rng(0x5eed_0000 ^ target.len() as u64);
    let start = Instant::now();
    let mut runs = 0;
    while runs < iterations && start.elapsed() < BUDGET {
        let base = &pool[rng.below(pool.len())].1;
        let input = mutate(&mut rng, base, &pool);
        check(target, f, &input, &format!("mutation {runs}"));
        runs += 1;
    }
    println!(
        "{target}: {} corpus files and {runs} mutations, no panic",
        pool.len()
    );
}

fn check(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{target}-{:016x}", fxhash(input)));
        let _ = std::fs::write(&file, input);
        panic!(
            "{target}: {what} panicked; input saved to {}",
            file.display()
        );
    }
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn manifests_corpus_and_mutations_compile_order_independently_without_panic() {
    run("manifests", targets::manifests, 10_000);
}

#[test]
fn certificate_corpus_and_mutations_are_refused_or_served_without_panic() {
    run("certificate", targets::certificate, 10_000);
}

#[test]
fn request_corpus_and_mutations_route_without_panic() {
    run("request", targets::request, 50_000);
}
