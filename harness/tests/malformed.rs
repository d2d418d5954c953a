//! Parser robustness, on any machine: every file in `tests/malformed/` is refused with an
//! input error (its first line may say `# expect: TEXT`, which the error must contain), and
//! thousands of deterministic mutations of the suites' real specs never panic or hang the
//! parser or the model.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bondcheck::ifenslave::Applier;
use bondcheck::{model, spec};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_malformed_file_is_an_input_error_naming_its_place() {
    let files = corpus();
    assert!(files.len() >= 30, "the corpus is {} files", files.len());
    for file in files {
        let err = spec::load(&file).expect_err(&format!("{} must be refused", file.display()));
        assert_eq!(err.exit_code(), 2, "{}: {err}", file.display());
        let text = std::fs::read(&file).unwrap();
        let first = String::from_utf8_lossy(&text)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(expect) = first.strip_prefix("# expect: ") {
            assert!(
                err.to_string().contains(expect),
                "{}:\n  error: {err}\n  expected to contain: {expect}",
                file.display()
            );
        }
        assert!(
            err.to_string().starts_with(&file.display().to_string()),
            "{err} names the file"
        );
    }
}

/// A small deterministic generator (xorshift64*), so a failure reproduces.
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

const TOKENS: &[&str] = &[
    " ",
    "\n",
    "\\\n",
    "#",
    "0",
    "-1",
    "4294967296",
    "bond-mode",
    "bond-slaves",
    "bond-primary",
    "iface",
    "auto",
    "mapping",
    "source",
    "inet",
    "inet6",
    "static",
    ":",
    "/",
    "none",
    "all",
    "802.3ad",
    "10.0.0.1/33",
    "bond-arp-ip-target",
    "bond-queue-id",
    "eth0:99",
    "\u{0}",
    "\u{feff}",
    "é",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 if !s.is_empty() => {
                let end = (at + rng.below(12)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                s.splice(at..at, t.chars());
            }
            2 => {
                let from = rng.below(s.len());
                let end = (from + rng.below(40)).min(s.len());
                let piece: Vec<char> = s[from..end].to_vec();
                s.splice(at..at, piece);
            }
            _ => s.insert(at, char::from(rng.below(128) as u8)),
        }
    }
    s.into_iter().collect()
}

#[test]
fn mutated_specs_never_panic_or_hang_the_parser_or_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let seeds: Vec<String> = [
        "debian-howto",
        "modes/active-backup",
        "modes/802.3ad",
        "ifenslave-pitfalls/queue-id-and-active-slave",
    ]
    .iter()
    .map(|c| std::fs::read_to_string(root.join("suites").join(c).join("interfaces")).unwrap())
    .collect();
    let mut rng = Rng(0x5eed_b04d);
    let (mut parsed, mut refused) = (0, 0);
    for i in 0..4000 {
        let text = mutate(&mut rng, &seeds[i % seeds.len()]);
        let start = Instant::now();
        let outcome =
            std::panic::catch_unwind(
                || match spec::parse(Path::new("mutant/interfaces"), &text) {
                    Ok(s) => {
                        model::predict(&s, Applier::Netlink);
                        model::predict(&s, Applier::Ifupdown);
                        true
                    }
                    Err(e) => {
                        assert_eq!(e.exit_code(), 2, "{e}");
                        false
                    }
                },
            );
        match outcome {
            Ok(true) => parsed += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("mutation {i} panicked on:\n{text:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "mutation {i} took {:?}:\n{text:?}",
            start.elapsed()
        );
    }
    // Both outcomes must occur, or the mutations do not exercise the parser.
    assert!(
        parsed > 100 && refused > 100,
        "parsed {parsed}, refused {refused}"
    );
}
