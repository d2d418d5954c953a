# bondcheck's recipes. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Debian packages a run needs: the UML kernel with its bonding module, unshare, and ifup with
# the ifenslave hooks for `--apply ifupdown`.
packages := "user-mode-linux util-linux ifupdown ifenslave"

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

# Benchmarks: the how-to's case end to end (guest boot included), frames per second through a bond, the full default suite against its inherent kernel time, the kernel's own bonding selftests of the UML kernel's version, and memory; writes reports/bench-seed.json.
bench: setup
    #!/usr/bin/env bash
    set -euo pipefail
    # The kernel's bonding selftests, from Debian's linux-source-6.1 of the version the UML
    # kernel was built from (its Built-Using), else the closest the archive has; and the tools
    # they run.
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    want=$(dpkg-query -W -f='${Built-Using}' user-mode-linux | sed -n 's/.*linux (= \([^)]*\)).*/\1/p')
    have=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
    missing=()
    for p in iproute2 iputils-ping tcpdump jq kmod procps; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "$have" != "$want" ] || [ ${#missing[@]} -gt 0 ]; then
        $sudo apt-get update -qq
        pick=linux-source-6.1
        apt-cache madison linux-source-6.1 | awk '{print $3}' | grep -qx "$want" && pick="linux-source-6.1=$want"
        echo "bench: installing $pick ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pick" "${missing[@]}" >/dev/null
    fi
    tree=target/bench/linux-source-6.1
    stamp=$tree/.from-$(dpkg-query -W -f='${Version}' linux-source-6.1)
    if [ ! -e "$stamp" ]; then
        rm -rf "$tree" && mkdir -p target/bench
        tar -xJf /usr/src/linux-source-6.1.tar.xz -C target/bench linux-source-6.1/Makefile \
            linux-source-6.1/tools/testing/selftests/drivers/net/bonding \
            linux-source-6.1/tools/testing/selftests/net/forwarding/lib.sh
        touch "$stamp"
    fi
    cargo bench --quiet --bench seed

# Fuzz the interfaces parser and the model, seeded with the suites' specs (needs a nightly toolchain; installs cargo-fuzz).
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    mkdir -p fuzz/corpus/spec
    for f in suites/*/interfaces suites/*/*/interfaces; do cp "$f" "fuzz/corpus/spec/$(echo "$f" | tr / _)"; done
    cd fuzz && cargo +nightly fuzz run spec -- -max_total_time={{ seconds }}
