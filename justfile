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

# busybox-static: virtme-ng builds its initramfs from it.

# Install what --kernel vm:IMAGE needs: Debian's qemu-system-x86 and virtme-ng from PyPI.
setup-vm: setup
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for p in qemu-system-x86 busybox-static; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "setup-vm: installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v vng >/dev/null || pip install -q virtme-ng

# Where fetched kernels are kept: one folder per package, as `dpkg-deb -x` extracts it.
kernel_cache := env("XDG_CACHE_HOME", env("HOME") / ".cache") / "bondcheck/kernels"

# Nothing is installed: apt runs on a private source list and state in the cache, the package
# is extracted there (dpkg-deb -x) and its modules indexed (depmod -b).

# Fetch Debian's newest amd64 kernel of a series (6.1, 6.12) into the cache; prints its vmlinuz.
kernel series:
    #!/usr/bin/env bash
    set -euo pipefail
    cache="{{ kernel_cache }}"; apt="$cache/apt"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    printf 'deb [signed-by=%s] http://deb.debian.org/debian %s main\n' \
        "$keyring" bookworm "$keyring" bookworm-updates "$keyring" bookworm-backports > "$apt/sources.list"
    printf 'deb [signed-by=%s] http://deb.debian.org/debian-security bookworm-security main\n' "$keyring" >> "$apt/sources.list"
    opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
          -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o Debug::NoLocking=1
          -o APT::Sandbox::User=root)
    # The lists are refreshed at most daily: a matrix run asks the archive once.
    if [ -z "$(find "$apt/lists" -maxdepth 1 -name '*_InRelease' -mtime -1 2>/dev/null)" ]; then
        apt-get "${opts[@]}" update -qq >&2
    fi
    # The metapackage's versions name each series' newest ABI package, e.g.
    # linux-image-amd64 6.12.95-1~bpo12+1 depends on linux-image-6.12.95+deb12-amd64.
    package=$(apt-cache "${opts[@]}" show linux-image-amd64 \
        | awk -v s="{{ series }}." '/^Version: /{v=$2} /^Depends: /{if (index(v, s) == 1) {print v, $2}}' \
        | sort -V | tail -n1 | cut -d' ' -f2)
    if [ -z "$package" ]; then
        echo "kernel: no linux-image-amd64 of series {{ series }} in bookworm, its updates or backports" >&2
        exit 2
    fi
    release=${package#linux-image-}
    root="$cache/$package"
    if [ ! -f "$root/lib/modules/$release/modules.dep" ]; then
        echo "kernel: fetching $package" >&2
        tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
        trap 'rm -rf "$tmp"' EXIT
        (cd "$tmp" && apt-get "${opts[@]}" download -qq "$package" >&2)
        dpkg-deb -x "$tmp"/*.deb "$tmp/root"
        depmod -b "$tmp/root" "$release"
        rm -rf "$root"; mv "$tmp/root" "$root"
    fi
    echo "$root/boot/vmlinuz-$release"

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

# Kernel series `just matrix` runs besides UML: bookworm's and bookworm-backports' kernels.
matrix_series := "6.1 6.12"

# One kernel after another: reports/matrix/<kernel>.json each, then `bondcheck report matrix`
# joins them. About 10 minutes for the default suites on 2 cores; not part of `test`.

# The suites (or paths) on UML and Debian's 6.1 and 6.12 under qemu; writes reports/matrix.json.
matrix *paths: setup-vm
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release --quiet
    bc=./target/release/bondcheck
    mkdir -p reports/matrix
    rm -f reports/matrix/*.json
    # A run whose cases fail (exit 1) still wrote its report; anything else stops the matrix.
    run() {
        local code=0
        "$bc" run --report "reports/matrix/$1.json" --kernel "$2" {{ paths }} || code=$?
        [ "$code" -le 1 ] || { echo "matrix: the $1 run failed (exit $code)" >&2; exit "$code"; }
    }
    run uml uml
    reports=(reports/matrix/uml.json)
    for series in {{ matrix_series }}; do
        image=$(just kernel "$series")
        run "$series" "vm:$image"
        reports+=("reports/matrix/$series.json")
    done
    "$bc" report matrix reports/matrix.json "${reports[@]}"

# Which kernel backends work on this machine.
doctor:
    cargo run --quiet --release -- doctor

# Benchmarks: the how-to's case end to end (guest boot included), frames per second through a bond, the full default suite against its inherent kernel time (one lane and four side by side, with the timing margins of each), the kernel's own bonding selftests of the UML kernel's version, and memory; writes reports/bench-seed.json.
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
