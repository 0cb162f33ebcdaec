//! # fuzz — a mutation fuzzer on stable Rust, run as ordinary tests
//!
//! ```text
//!  seeds (valid messages) ──mutate (flip, splice, lengths, interesting values)──► input
//!  generator (grammar, e.g. SQL with deep nesting) ──────────────────────────────► input
//!  input ──► target (a decoder, a planner) ──panic?──► report seed, run and input; fail
//! ```
//!
//! Each target is a `#[test]` next to the code it feeds (so it reaches private decoders)
//! and runs for `FUZZ_SECONDS` (default 10) under `cargo test`. Inputs are a pure function
//! of `FUZZ_SEED` (random unless set, always printed) and the run number, so a failure is
//! reproduced by running the same target with the same seed; a crash that aborts the
//! process (a stack overflow, an allocation the allocator refuses) fails the test binary
//! and is reproduced the same way. Why not cargo-fuzz: it needs a nightly toolchain and
//! instrumenting every crate, which here means another build of DataFusion; this costs
//! nothing extra to build (see docs/DECISIONS.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

pub use rand::rngs::StdRng;
pub use rand::Rng;
use rand::{RngCore, SeedableRng};

/// What one run of a target did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    pub seed: u64,
    pub runs: u64,
    pub seconds: f64,
}

/// How long each target runs (`FUZZ_SECONDS`, default 10).
pub fn seconds() -> f64 {
    std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Run `target` on mutations of `seeds` (and random bytes) for [`seconds`].
pub fn bytes(name: &str, seeds: &[Vec<u8>], mut target: impl FnMut(&[u8])) -> Report {
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let originals = pool.len();
    drive(
        name,
        |rng| {
            let input = if rng.random_ratio(1, 16) {
                random_bytes(rng)
            } else {
                let base = &pool[rng.random_range(0..pool.len())];
                let mut input = base.clone();
                for _ in 0..rng.random_range(1..=6) {
                    mutate(rng, &mut input, &pool);
                }
                input
            };
            // Mutations of mutations reach further from the seeds; the seeds stay.
            if rng.random_ratio(1, 8) {
                if pool.len() < originals + 256 {
                    pool.push(input.clone());
                } else {
                    let at = rng.random_range(originals..pool.len());
                    pool[at] = input.clone();
                }
            }
            input
        },
        |input| target(input),
    )
}

/// Run `target` on inputs `generate` makes from the run's random source, for [`seconds`].
pub fn generated<T: std::fmt::Debug>(
    name: &str,
    mut generate: impl FnMut(&mut StdRng) -> T,
    mut target: impl FnMut(&T),
) -> Report {
    drive(name, |rng| generate(rng), |input| target(input))
}

fn drive<T: std::fmt::Debug>(
    name: &str,
    mut next: impl FnMut(&mut StdRng) -> T,
    mut target: impl FnMut(&T),
) -> Report {
    let seed = seed();
    let limit = Duration::from_secs_f64(seconds());
    eprintln!("fuzz {name}: FUZZ_SEED={seed}, {} s", limit.as_secs_f64());
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < limit {
        // Each run's input depends on the seed and the run number only.
        let mut rng = StdRng::seed_from_u64(seed ^ runs.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let input = next(&mut rng);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
            let shown = format!("{input:?}");
            let shown: String = shown.chars().take(4096).collect();
            eprintln!("fuzz {name}: run {runs} with FUZZ_SEED={seed} panicked on input:\n{shown}");
            std::panic::resume_unwind(panic);
        }
        runs += 1;
    }
    let report = Report {
        target: name.into(),
        seed,
        runs,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "fuzz {name}: {runs} runs in {:.0} s ({:.0}/s), no crash",
        report.seconds,
        runs as f64 / report.seconds.max(1e-9)
    );
    if let Ok(path) = std::env::var("FUZZ_REPORT") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(
                file,
                "{{\"target\":\"{name}\",\"seed\":{seed},\"runs\":{runs},\"seconds\":{:.0},\"crashes\":0}}",
                report.seconds
            );
        }
    }
    report
}

/// One input made from `seeds`: one to six mutations of one of them (for generators that
/// mix structure with raw mutations).
pub fn mutated(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if seeds.is_empty() {
        return random_bytes(rng);
    }
    let mut input = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=6) {
        mutate(rng, &mut input, seeds);
    }
    input
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.random_ratio(1, 8) {
        rng.random_range(0..65_536)
    } else {
        rng.random_range(0..256)
    };
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// Values that break length fields and counters.
const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    8,
    127,
    128,
    255,
    256,
    0x7fff,
    0x8000,
    0xffff,
    0x10000,
    0x7fff_ffff,
    -0x8000_0000,
    0xffff_ffff,
    1 << 40,
    i64::MAX,
    i64::MIN,
];

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = input.len();
    match rng.random_range(0..10) {
        // Flip a bit.
        0 if len > 0 => {
            let at = rng.random_range(0..len);
            input[at] ^= 1 << rng.random_range(0..8);
        }
        // A random byte.
        1 if len > 0 => {
            let at = rng.random_range(0..len);
            input[at] = rng.random();
        }
        // An interesting integer, 1, 2, 4 or 8 bytes, either endianness.
        2 if len > 0 => {
            let value = INTERESTING[rng.random_range(0..INTERESTING.len())];
            let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
            let bytes = if rng.random() {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let bytes = if rng.random() {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            let at = rng.random_range(0..len);
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = input.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        // Cut.
        3 if len > 0 => {
            input.truncate(rng.random_range(0..len));
        }
        // Delete a run.
        4 if len > 1 => {
            let at = rng.random_range(0..len - 1);
            let n = rng.random_range(1..=(len - at).min(64));
            input.drain(at..at + n);
        }
        // Insert random bytes.
        5 => {
            let at = rng.random_range(0..=len);
            let n = rng.random_range(1..=32);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(at..at, bytes);
        }
        // Repeat a run (many copies: lengths and counts).
        6 if len > 0 => {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(16));
            let run = input[at..at + n].to_vec();
            let times = if rng.random_ratio(1, 4) {
                rng.random_range(1..2048)
            } else {
                rng.random_range(1..8)
            };
            let copies: Vec<u8> = run.iter().copied().cycle().take(n * times).collect();
            input.splice(at..at, copies);
        }
        // Splice in part of another input.
        7 => {
            let other = &pool[rng.random_range(0..pool.len())];
            if !other.is_empty() {
                let from = rng.random_range(0..other.len());
                let to = rng.random_range(from..=other.len());
                let at = rng.random_range(0..=len);
                input.splice(at..at, other[from..to].iter().copied());
            }
        }
        // Swap two bytes.
        8 if len > 1 => {
            let (a, b) = (rng.random_range(0..len), rng.random_range(0..len));
            input.swap(a, b);
        }
        _ => {
            let at = rng.random_range(0..=len);
            input.insert(at, rng.random());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_follow_from_the_seed() {
        std::env::set_var("FUZZ_SECONDS", "0.2");
        std::env::set_var("FUZZ_SEED", "42");
        let mut first = Vec::new();
        bytes("repeat-a", &[b"hello".to_vec()], |i| {
            if first.len() < 50 {
                first.push(i.to_vec())
            }
        });
        let mut second = Vec::new();
        bytes("repeat-b", &[b"hello".to_vec()], |i| {
            if second.len() < 50 {
                second.push(i.to_vec())
            }
        });
        assert_eq!(first, second);
        assert!(first.iter().any(|i| i != b"hello"));
    }

    #[test]
    #[should_panic(expected = "found it")]
    fn a_panic_fails_the_run() {
        bytes("panics", &[b"abc".to_vec()], |i| {
            if i.len() != 3 {
                panic!("found it");
            }
        });
    }
}
