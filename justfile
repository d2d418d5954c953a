# bondcheck's recipes. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Debian packages a run needs: the UML kernel with its bonding module, unshare, and ifup with
# the ifenslave hooks for `--apply ifupdown`; and chromium, which the HTML report's test
# renders the page in.
packages := "user-mode-linux util-linux ifupdown ifenslave chromium"

default:
    @just --list

# Install what is missing (Debian packages, cargo-nextest); quick when nothing is.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for p in {{ packages }}; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "setup: installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# Run the suites (or the given paths) in a real bonding kernel; writes reports/latest.json.
test-bonding *paths: setup
    cargo build --release --quiet
    ./target/release/bondcheck run --report reports/latest.json {{ paths }}

# The whole test suite: formatting, lints, unit and CLI tests, and the bonding trials for real.
test: setup
    cargo fmt --check
    cargo clippy --all-targets --quiet -- -D warnings
    cargo nextest run --workspace

# The same for a pipeline: nextest's ci profile writes target/nextest/ci/junit.xml.
test-ci: setup
    cargo nextest run --workspace --profile ci

# Which kernel backends work on this machine.
doctor:
    cargo run --quiet --release -- doctor

# Benchmarks: the how-to's case end to end (guest boot included) and frames per second through a bond; writes reports/bench-seed.json.
bench: setup
    cargo bench --quiet --bench seed

# Fuzz the interfaces parser and the model, seeded with the suites' specs (needs a nightly toolchain; installs cargo-fuzz).
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    mkdir -p fuzz/corpus/spec
    for f in suites/*/interfaces suites/*/*/interfaces; do cp "$f" "fuzz/corpus/spec/$(echo "$f" | tr / _)"; done
    cd fuzz && cargo +nightly fuzz run spec -- -max_total_time={{ seconds }}
