//! The bond an admin wrote: an `/etc/network/interfaces` file (interfaces(5), as Debian's
//! ifupdown reads it) with ifenslave's `bond-*` options, turned into typed settings that keep
//! the file:line:column they came from.
//!
//! This parser covers the subset of the language that the suites use: `auto`/`allow-*`, `iface`
//! stanzas with option lines, comments and backslash continuation lines. Keywords it does not
//! follow yet (`source`, `mapping`, ...) and `bond-*` options it cannot apply yet are errors,
//! never silently dropped: a verdict must not cover a bond other than the one written.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Location, Result};
use crate::options::{self, Kind, Opt};

/// One parsed spec file: exactly one bond, with what the file said about it.
#[derive(Debug, Clone)]
pub struct Spec {
    pub path: PathBuf,
    /// Every file read, the spec first, then what `source` lines brought in, in reading order.
    pub files: Vec<PathBuf>,
    /// SHA-256 over every file read (the spec alone when it sources nothing).
    pub sha256: String,
    pub bond: Bond,
    /// Lines that are valid interfaces(5) but have no effect on what bondcheck builds.
    pub notes: Vec<Finding>,
}

/// Something worth telling the user about a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub at: Location,
    pub message: String,
}

/// A value as written, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub at: Location,
}

/// The bond master's stanza and the slaves that join it.
#[derive(Debug, Clone)]
pub struct Bond {
    pub name: String,
    pub at: Location,
    /// In enslave order: `bond-slaves` first, then slaves naming this bond in `bond-master`.
    pub slaves: Vec<Setting<String>>,
    /// The slaves that join through `bond-master` in a stanza of their own.
    pub joined: Vec<String>,
    /// Every `bond-*` option of the master's stanza, in file order.
    pub options: Vec<BondOption>,
    pub address: Option<Setting<Ipv4Net>>,
}

/// One bond option as written: the catalogue entry, the typed value, the text.
#[derive(Debug, Clone)]
pub struct BondOption {
    pub opt: &'static Opt,
    pub value: OptValue,
    /// The value as written, for reports ("requested").
    pub raw: String,
    pub at: Location,
}

/// A typed option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptValue {
    Number(u64),
    Ipv4(Vec<Ipv4Addr>),
    Ipv6(Vec<Ipv6Addr>),
    Mac([u8; 6]),
    /// `bond-primary`: candidates in order.
    Names(Vec<String>),
    /// `bond-active-slave`: a slave, or none.
    Slave(Option<String>),
    /// `bond-queue-id`, `bond-prio`: a value per slave.
    PerSlave(Vec<(String, i64)>),
}

impl Bond {
    /// The option with this kernel name, if the spec sets it.
    pub fn option(&self, name: &str) -> Option<&BondOption> {
        self.options.iter().find(|o| o.opt.name == name)
    }

    /// The mode as written, if it is.
    pub fn mode(&self) -> Option<Mode> {
        match self.option("mode")?.value {
            OptValue::Number(n) => Mode::from_number(u8::try_from(n).ok()?),
            _ => None,
        }
    }
}

/// The seven bonding modes, with the names and numbers ifenslave and the kernel accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
pub enum Mode {
    BalanceRr,
    ActiveBackup,
    BalanceXor,
    Broadcast,
    Ieee8023ad,
    BalanceTlb,
    BalanceAlb,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::BalanceRr,
        Mode::ActiveBackup,
        Mode::BalanceXor,
        Mode::Broadcast,
        Mode::Ieee8023ad,
        Mode::BalanceTlb,
        Mode::BalanceAlb,
    ];

    /// The kernel's name (bond_options.c `bond_mode_tbl`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::BalanceRr => "balance-rr",
            Mode::ActiveBackup => "active-backup",
            Mode::BalanceXor => "balance-xor",
            Mode::Broadcast => "broadcast",
            Mode::Ieee8023ad => "802.3ad",
            Mode::BalanceTlb => "balance-tlb",
            Mode::BalanceAlb => "balance-alb",
        }
    }

    /// The number in include/uapi/linux/if_bonding.h, which is also IFLA_BOND_MODE's value.
    pub fn number(self) -> u8 {
        Mode::ALL.iter().position(|m| *m == self).expect("listed") as u8
    }

    pub fn from_number(n: u8) -> Option<Mode> {
        Mode::ALL.get(usize::from(n)).copied()
    }

    /// Parses what `bond-mode` may hold: a name or a number 0-6.
    pub fn parse(s: &str) -> Option<Mode> {
        match s.parse::<u8>() {
            Ok(n) => Mode::from_number(n),
            Err(_) => Mode::ALL.into_iter().find(|m| m.name() == s),
        }
    }

    /// Modes whose driver honours `primary` (bond_options.c: unsuppmodes of BOND_OPT_PRIMARY).
    pub fn uses_primary(self) -> bool {
        matches!(
            self,
            Mode::ActiveBackup | Mode::BalanceTlb | Mode::BalanceAlb
        )
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An IPv4 address with its prefix length, as `ip addr` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Ipv4Net {
    type Err = String;

    /// `ADDR/PREFIX`, as `ip addr add` takes it.
    fn from_str(s: &str) -> std::result::Result<Ipv4Net, String> {
        let bad = || format!("`{s}` is not an IPv4 address with a prefix (ADDR/PREFIX)");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        Ok(Ipv4Net {
            addr: addr.parse().map_err(|_| bad())?,
            prefix: prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?,
        })
    }
}

/// Options of ifupdown's inet static method that configure nothing on the interface itself.
const STATIC_UNUSED: &[&str] = &["network", "broadcast"];

/// Reads and parses a spec file.
pub fn load(path: &Path) -> Result<Spec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, &e))?;
    parse(path, &text)
}

/// Parses spec text. `path` names places in errors and findings, and relative `source`
/// lines are read from its folder.
pub fn parse(path: &Path, text: &str) -> Result<Spec> {
    let mut reader = Reader::default();
    reader.read(path, text)?;
    let Reader {
        stanzas,
        mut notes,
        files,
        ..
    } = reader;
    let bond = bond_from(path, &stanzas, &mut notes)?;
    let mut hash = Sha256::new();
    if let [(_, only)] = &files[..] {
        hash.update(only.as_bytes());
    } else {
        for (p, t) in &files {
            hash.update(p.display().to_string().as_bytes());
            hash.update([0]);
            hash.update(t.as_bytes());
        }
    }
    Ok(Spec {
        path: path.to_path_buf(),
        files: files.into_iter().map(|(p, _)| p).collect(),
        sha256: format!("{:x}", hash.finalize()),
        bond,
        notes,
    })
}

/// A word of a logical line and the 1-based column where it starts.
#[derive(Debug, Clone)]
struct Word {
    text: String,
    column: usize,
}

#[derive(Debug)]
struct OptionLine {
    key: Word,
    values: Vec<Word>,
    line: usize,
}

#[derive(Debug)]
struct Stanza {
    path: PathBuf,
    name: String,
    family: String,
    method: Word,
    line: usize,
    options: Vec<OptionLine>,
}

/// Reads interfaces files into `iface` stanzas, following `source` lines, checking the
/// top-level grammar on the way.
#[derive(Default)]
struct Reader {
    stanzas: Vec<Stanza>,
    notes: Vec<Finding>,
    files: Vec<(PathBuf, String)>,
    /// Files being read, outermost first: a file met again here is a `source` cycle.
    reading: Vec<PathBuf>,
}

/// What the option lines being read belong to.
enum Block {
    None,
    Iface,
    /// A `mapping` stanza: its `script`/`map` lines are read and not applied.
    Mapping,
}

impl Reader {
    fn read(&mut self, path: &Path, text: &str) -> Result<()> {
        self.reading
            .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        self.files.push((path.to_path_buf(), text.to_string()));
        let mut block = Block::None;
        for (line, words) in logical_lines(text) {
            let keyword = &words[0];
            let at = Location::new(path, line, keyword.column);
            match keyword.text.as_str() {
                "auto" | "no-auto-down" => block = Block::None,
                k if k.starts_with("allow-") => block = Block::None,
                "iface" => {
                    let [_, name, family, method] = &words[..] else {
                        let column = words.get(4).map_or(keyword.column, |w| w.column);
                        return Err(Error::input(
                            path,
                            line,
                            column,
                            "expected `iface NAME FAMILY METHOD`",
                        ));
                    };
                    self.stanzas.push(Stanza {
                        path: path.to_path_buf(),
                        name: name.text.clone(),
                        family: family.text.clone(),
                        method: method.clone(),
                        line,
                        options: Vec::new(),
                    });
                    block = Block::Iface;
                }
                "mapping" => {
                    let names: Vec<&str> = words[1..].iter().map(|w| w.text.as_str()).collect();
                    self.notes.push(Finding {
                        at,
                        message: format!(
                            "mapping stanza for {} is read but not applied: bondcheck builds the interfaces \
                             as named",
                            names.join(" ")
                        ),
                    });
                    block = Block::Mapping;
                }
                "source" => {
                    for pattern in &words[1..] {
                        self.source_glob(
                            path,
                            &pattern.text,
                            Location::new(path, line, pattern.column),
                        )?;
                    }
                    block = Block::None;
                }
                "source-directory" | "source-dir" => {
                    for dir in &words[1..] {
                        self.source_directory(
                            path,
                            &dir.text,
                            Location::new(path, line, dir.column),
                        )?;
                    }
                    block = Block::None;
                }
                k @ ("rename" | "no-scripts") => {
                    return Err(Error::input(
                        path,
                        line,
                        keyword.column,
                        format!(
                            "`{k}` is valid interfaces(5) but bondcheck does not follow it yet"
                        ),
                    ));
                }
                _ => match (&block, self.stanzas.last_mut()) {
                    (Block::Iface, Some(stanza)) => stanza.options.push(OptionLine {
                        key: keyword.clone(),
                        values: words[1..].to_vec(),
                        line,
                    }),
                    (Block::Mapping, _) => {}
                    _ => {
                        return Err(Error::input(
                            path,
                            line,
                            keyword.column,
                            format!(
                                "`{}` is neither a keyword nor inside an iface stanza",
                                keyword.text
                            ),
                        ));
                    }
                },
            }
        }
        self.reading.pop();
        Ok(())
    }

    /// ifupdown reads a relative `source` path from the folder of the file that names it.
    fn relative(from: &Path, target: &str) -> PathBuf {
        let dir = from.parent().unwrap_or(Path::new("."));
        dir.join(target)
    }

    fn source_glob(&mut self, from: &Path, pattern: &str, at: Location) -> Result<()> {
        let full = Self::relative(from, pattern);
        let bad = |m: String| Error::Input {
            at: at.clone(),
            message: m,
        };
        let matches = glob::glob(&full.to_string_lossy())
            .map_err(|e| bad(format!("`{pattern}` is not a valid pattern: {e}")))?;
        let mut files: Vec<PathBuf> = matches
            .filter_map(std::result::Result::ok)
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            self.notes.push(Finding {
                at: at.clone(),
                message: format!("`source {pattern}` matches no file"),
            });
        }
        for file in files {
            self.include(&file, &at)?;
        }
        Ok(())
    }

    /// Like run-parts: the folder's files whose names are only letters, digits, `_` and `-`.
    fn source_directory(&mut self, from: &Path, dir: &str, at: Location) -> Result<()> {
        let full = Self::relative(from, dir);
        let entries = std::fs::read_dir(&full).map_err(|e| Error::Input {
            at: at.clone(),
            message: format!("source-directory {}: {e}", full.display()),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    })
            })
            .collect();
        files.sort();
        for file in files {
            self.include(&file, &at)?;
        }
        Ok(())
    }

    fn include(&mut self, file: &Path, at: &Location) -> Result<()> {
        let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        if self.reading.contains(&canonical) {
            let chain: Vec<String> = self
                .reading
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(Error::Input {
                at: at.clone(),
                message: format!(
                    "source cycle: {} is already being read ({})",
                    file.display(),
                    chain.join(" -> ")
                ),
            });
        }
        let text = std::fs::read_to_string(file).map_err(|e| Error::Input {
            at: at.clone(),
            message: format!("{}: {e}", file.display()),
        })?;
        self.read(file, &text)
    }
}

/// Joins backslash continuations and drops blank and comment lines; yields the first physical
/// line number of each logical line and its words.
fn logical_lines(text: &str) -> Vec<(usize, Vec<Word>)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut buf) = pending.take().unwrap_or((i + 1, String::new()));
        let trimmed = raw.trim_end();
        // interfaces(5): a comment is a line whose first non-blank character is `#`.
        if buf.is_empty() && trimmed.trim_start().starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                buf.push_str(head);
                pending = Some((start, buf));
            }
            None => {
                buf.push_str(trimmed);
                let words = words(&buf);
                if !words.is_empty() {
                    out.push((start, words));
                }
            }
        }
    }
    if let Some((start, buf)) = pending {
        let words = words(&buf);
        if !words.is_empty() {
            out.push((start, words));
        }
    }
    out
}

fn words(line: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (col, ch) in line.chars().enumerate() {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some(col),
            (true, Some(s)) => {
                out.push(Word {
                    text: line.chars().skip(s).take(col - s).collect(),
                    column: s + 1,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Word {
            text: line.chars().skip(s).collect(),
            column: s + 1,
        });
    }
    out
}

fn is_master(stanza: &Stanza) -> bool {
    // ifenslave's pre-up hook treats a stanza as a master when it has slaves or a mode.
    stanza
        .options
        .iter()
        .any(|o| matches!(o.key.text.as_str(), "bond-slaves" | "slaves" | "bond-mode"))
}

/// Finds the one bond master and interprets its options and those of its slaves.
fn bond_from(path: &Path, stanzas: &[Stanza], notes: &mut Vec<Finding>) -> Result<Bond> {
    let masters: Vec<&Stanza> = stanzas.iter().filter(|s| is_master(s)).collect();
    let master = match masters[..] {
        [one] => one,
        [] => {
            return Err(Error::input(
                path,
                1,
                1,
                "no bond here: no iface stanza has `bond-slaves` or `bond-mode`",
            ));
        }
        [first, second, ..] => {
            let message = if first.name == second.name {
                format!(
                    "bond options in two stanzas of {} ({} on {}:{}, {} here): ifenslave would run for each",
                    first.name,
                    first.family,
                    first.path.display(),
                    first.line,
                    second.family
                )
            } else {
                "a second bond: bondcheck verifies one bond per spec file".to_string()
            };
            return Err(Error::input(&second.path, second.line, 1, message));
        }
    };
    // Places in the master's stanza are in the file that holds it.
    let path = master.path.as_path();
    let at = |line: usize, column: usize| Location::new(path, line, column);
    if master.family != "inet" {
        return Err(Error::input(
            path,
            master.line,
            1,
            format!(
                "bond stanza family `{}`: only `inet` is supported yet",
                master.family
            ),
        ));
    }
    match master.method.text.as_str() {
        "static" | "manual" => {}
        m => {
            return Err(Error::input(
                path,
                master.line,
                master.method.column,
                format!("method `{m}`: bondcheck applies `static` and `manual` bonds only"),
            ));
        }
    }

    let mut bond = Bond {
        name: master.name.clone(),
        at: at(master.line, 1),
        slaves: Vec::new(),
        joined: Vec::new(),
        options: Vec::new(),
        address: None,
    };
    let mut netmask: Option<(u8, Location)> = None;
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for opt in &master.options {
        let key = opt.key.text.as_str();
        if let Some(first) = seen.insert(key, opt.line) {
            return Err(Error::input(
                path,
                opt.line,
                opt.key.column,
                format!("`{key}` given twice in this stanza (first on line {first})"),
            ));
        }
        let value_at = |w: &Word| at(opt.line, w.column);
        let one = || -> Result<&Word> {
            match &opt.values[..] {
                [v] => Ok(v),
                [] => Err(Error::input(
                    path,
                    opt.line,
                    opt.key.column,
                    format!("`{key}` needs a value"),
                )),
                [_, extra, ..] => Err(Error::input(
                    path,
                    opt.line,
                    extra.column,
                    format!("`{key}` takes one value"),
                )),
            }
        };
        let list = || -> Result<Setting<Vec<String>>> {
            let first = opt.values.first().ok_or_else(|| {
                Error::input(
                    path,
                    opt.line,
                    opt.key.column,
                    format!("`{key}` needs a value"),
                )
            })?;
            Ok(Setting {
                value: opt.values.iter().map(|w| w.text.clone()).collect(),
                at: value_at(first),
            })
        };
        match key {
            "bond-slaves" | "slaves" => {
                if key == "slaves" {
                    notes.push(Finding {
                        at: at(opt.line, opt.key.column),
                        message: "`slaves` is deprecated in ifenslave; write `bond-slaves`".into(),
                    });
                }
                let names = list()?;
                match names.value.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                    ["none"] => {}
                    ["all"] => {
                        return Err(Error::input(
                            path,
                            opt.line,
                            names.at.column,
                            "`all` (every physical NIC) cannot be built in a veth topology",
                        ));
                    }
                    _ => {
                        for (w, name) in opt.values.iter().zip(names.value) {
                            bond.slaves.push(Setting {
                                value: name,
                                at: value_at(w),
                            });
                        }
                    }
                }
            }
            k if options::by_key(k).is_some() => {
                let o = options::by_key(k).expect("checked");
                let first = opt.values.first().ok_or_else(|| {
                    Error::input(
                        path,
                        opt.line,
                        opt.key.column,
                        format!("`{key}` needs a value"),
                    )
                })?;
                let value = option_value(o, &opt.values).map_err(|(w, m)| {
                    Error::input(path, opt.line, w.map_or(opt.key.column, |w| w.column), m)
                })?;
                if o.origin == options::Origin::Extension {
                    notes.push(Finding {
                        at: at(opt.line, opt.key.column),
                        message: format!(
                            "`{k}` is a kernel option ifenslave cannot set; bondcheck applies it as an extension"
                        ),
                    });
                }
                bond.options.push(BondOption {
                    opt: o,
                    value,
                    raw: opt
                        .values
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    at: value_at(first),
                });
            }
            "address" => {
                let w = one()?;
                let (addr, prefix) = match w.text.split_once('/') {
                    Some((a, p)) => (a, Some(p)),
                    None => (w.text.as_str(), None),
                };
                let bad = || {
                    Error::input(
                        path,
                        opt.line,
                        w.column,
                        format!("`{}` is not an IPv4 address", w.text),
                    )
                };
                let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
                let prefix = match prefix {
                    Some(p) => Some(p.parse::<u8>().ok().filter(|p| *p <= 32).ok_or_else(bad)?),
                    None => None,
                };
                bond.address = Some(Setting {
                    value: Ipv4Net {
                        addr,
                        prefix: prefix.unwrap_or(32),
                    },
                    at: value_at(w),
                });
                if prefix.is_some() {
                    seen.insert("address/prefix", opt.line);
                }
            }
            "netmask" => {
                let w = one()?;
                let prefix = netmask_prefix(&w.text).ok_or_else(|| {
                    Error::input(
                        path,
                        opt.line,
                        w.column,
                        format!("`{}` is not a netmask", w.text),
                    )
                })?;
                netmask = Some((prefix, value_at(w)));
            }
            "gateway" => {
                let w = one()?;
                w.text.parse::<Ipv4Addr>().map_err(|_| {
                    Error::input(
                        path,
                        opt.line,
                        w.column,
                        format!("`{}` is not an IPv4 address", w.text),
                    )
                })?;
                notes.push(Finding {
                    at: at(opt.line, opt.key.column),
                    message: "`gateway`: no check covers the default route yet".into(),
                });
            }
            k if STATIC_UNUSED.contains(&k) => notes.push(Finding {
                at: at(opt.line, opt.key.column),
                message: format!(
                    "`{k}` is not used by ifupdown's static method: the kernel derives it"
                ),
            }),
            "bond-give-a-chance" => notes.push(Finding {
                at: at(opt.line, opt.key.column),
                message:
                    "`bond-give-a-chance` acts when a slave comes up (ifenslave's if-up hook); \
                          bondcheck does not apply it"
                        .into(),
            }),
            k if k.starts_with("bond-") => {
                let hint = options::nearest_key(k)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                return Err(Error::input(
                    path,
                    opt.line,
                    opt.key.column,
                    format!("unknown bond option `{k}`{hint}"),
                ));
            }
            k => notes.push(Finding {
                at: at(opt.line, opt.key.column),
                message: format!("`{k}` is not applied by bondcheck: no check covers it"),
            }),
        }
    }
    if let Some((prefix, nat)) = netmask {
        match &mut bond.address {
            Some(a) if seen.contains_key("address/prefix") => {
                return Err(Error::input(
                    path,
                    nat.line,
                    nat.column,
                    format!(
                        "`netmask` and a prefix on `address` ({}) both given",
                        a.value
                    ),
                ));
            }
            Some(a) => a.value.prefix = prefix,
            None => {
                return Err(Error::input(
                    path,
                    nat.line,
                    nat.column,
                    "`netmask` without `address`",
                ));
            }
        }
    }
    if master.method.text == "static" && bond.address.is_none() {
        return Err(Error::input(
            path,
            master.line,
            master.method.column,
            "`static` needs an `address`",
        ));
    }

    // Slaves may also join from their own stanza, the way ifenslave's `bond-master` works.
    for stanza in stanzas.iter().filter(|s| !std::ptr::eq(*s, master)) {
        for opt in &stanza.options {
            if opt.key.text == "bond-master"
                && opt.values.first().is_some_and(|v| v.text == bond.name)
            {
                let at = Location::new(&stanza.path, opt.line, opt.key.column);
                bond.slaves.push(Setting {
                    value: stanza.name.clone(),
                    at,
                });
            }
        }
    }
    for stanza in stanzas.iter().filter(|s| !std::ptr::eq(*s, master)) {
        let at = Location::new(&stanza.path, stanza.line, stanza.method.column);
        let is_slave = bond.slaves.iter().any(|s| s.value == stanza.name);
        let addressed = !matches!(stanza.method.text.as_str(), "manual" | "loopback");
        if is_slave && addressed {
            notes.push(Finding {
                at,
                message: format!(
                    "slave {} is also configured `{} {}`: ifupdown gives it an address the bond then shadows",
                    stanza.name, stanza.family, stanza.method.text
                ),
            });
        } else if stanza.name == bond.name {
            notes.push(Finding {
                at,
                message: format!(
                    "the {} stanza of {} is not applied by bondcheck",
                    stanza.family, bond.name
                ),
            });
        }
    }
    let mut names: BTreeMap<&str, &Location> = BTreeMap::new();
    for s in &bond.slaves {
        if let Some(first) = names.insert(&s.value, &s.at) {
            return Err(Error::input(
                path,
                s.at.line,
                s.at.column,
                format!(
                    "slave `{}` listed twice (first at line {})",
                    s.value, first.line
                ),
            ));
        }
        if s.value.len() > 15 || s.value.contains('/') || s.value == bond.name {
            return Err(Error::input(
                path,
                s.at.line,
                s.at.column,
                format!("`{}` is not a valid slave name", s.value),
            ));
        }
    }
    if bond.slaves.is_empty() {
        return Err(Error::input(
            path,
            master.line,
            1,
            format!("bond `{}` has no slaves", bond.name),
        ));
    }
    Ok(bond)
}

/// Types the words of an option line by the option's kind; an error names the bad word.
fn option_value<'w>(
    o: &Opt,
    words: &'w [Word],
) -> std::result::Result<OptValue, (Option<&'w Word>, String)> {
    let key = o.key;
    let one = || match words {
        [w] => Ok(w),
        [_, extra, ..] => Err((Some(extra), format!("`{key}` takes one value"))),
        [] => Err((None, format!("`{key}` needs a value"))),
    };
    let number = |w: &'w Word, min: u64, max: u64| {
        let n = w.text.parse::<u64>().map_err(|_| {
            (
                Some(w),
                format!("`{key}` wants a whole number, not `{}`", w.text),
            )
        })?;
        if n < min || n > max {
            return Err((
                Some(w),
                format!("`{key}` {n} is out of range ({min}-{max})"),
            ));
        }
        Ok(n)
    };
    match o.kind {
        Kind::Number { min, max } => Ok(OptValue::Number(number(one()?, min, max)?)),
        Kind::Delay { max } => Ok(OptValue::Number(number(one()?, 0, max)?)),
        Kind::Word(table) => {
            let w = one()?;
            let found = match w.text.parse::<u64>() {
                Ok(n) => table.iter().find(|(_, v)| *v == n),
                Err(_) => table.iter().find(|(name, _)| *name == w.text),
            };
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            found.map(|(_, v)| OptValue::Number(*v)).ok_or_else(|| {
                (
                    Some(w),
                    format!("`{key}` `{}` is not one of: {}", w.text, names.join(", ")),
                )
            })
        }
        // bond_is_ip_target_ok / bond_is_ip6_target_ok: what the kernel refuses as targets.
        Kind::Ipv4List => targets(words, "IPv4", "ARP", |a: &Ipv4Addr| {
            !a.is_unspecified() && !a.is_broadcast()
        })
        .map(OptValue::Ipv4),
        Kind::Ipv6List => targets(words, "IPv6", "NS", |a: &Ipv6Addr| {
            !a.is_unspecified() && !a.is_loopback() && !a.is_multicast()
        })
        .map(OptValue::Ipv6),
        Kind::Mac => {
            let w = one()?;
            let bytes: Vec<u8> = w
                .text
                .split(':')
                .filter_map(|b| u8::from_str_radix(b, 16).ok())
                .collect();
            match <[u8; 6]>::try_from(bytes) {
                Ok(mac) if mac[0] & 1 == 0 && w.text.split(':').all(|b| b.len() == 2) => {
                    Ok(OptValue::Mac(mac))
                }
                _ => Err((
                    Some(w),
                    format!("`{}` is not a unicast MAC address", w.text),
                )),
            }
        }
        Kind::SlaveList => Ok(OptValue::Names(
            words.iter().map(|w| w.text.clone()).collect(),
        )),
        Kind::Slave => {
            let w = one()?;
            Ok(OptValue::Slave((w.text != "none").then(|| w.text.clone())))
        }
        Kind::PerSlave { min, max } => {
            let mut out = Vec::new();
            for w in words {
                let pair = w
                    .text
                    .split_once(':')
                    .and_then(|(s, v)| Some((s.to_string(), v.parse::<i64>().ok()?)));
                let (slave, value) =
                    pair.ok_or_else(|| (Some(w), format!("`{}` is not SLAVE:NUMBER", w.text)))?;
                if value < min || value > max {
                    return Err((
                        Some(w),
                        format!("`{key}` {value} is out of range ({min}-{max})"),
                    ));
                }
                out.push((slave, value));
            }
            Ok(OptValue::PerSlave(out))
        }
    }
}

/// ARP or NS targets: addresses of `family` that the kernel takes as targets (`usable`), no
/// repeats, at most 16 (BOND_MAX_ARP_TARGETS, BOND_MAX_NS_TARGETS).
fn targets<'w, A: std::str::FromStr + PartialEq + fmt::Display>(
    words: &'w [Word],
    family: &str,
    kind: &str,
    usable: fn(&A) -> bool,
) -> std::result::Result<Vec<A>, (Option<&'w Word>, String)> {
    let mut out: Vec<A> = Vec::new();
    for w in words {
        let a: A = w
            .text
            .parse()
            .map_err(|_| (Some(w), format!("`{}` is not an {family} address", w.text)))?;
        if !usable(&a) || out.contains(&a) {
            return Err((
                Some(w),
                format!("`{a}` cannot be an {kind} target (unusable or repeated)"),
            ));
        }
        out.push(a);
    }
    if out.len() > 16 {
        return Err((words.get(16), format!("at most 16 {kind} targets")));
    }
    Ok(out)
}

/// `255.255.255.0` or `24` to a prefix length; None for a non-contiguous mask.
fn netmask_prefix(s: &str) -> Option<u8> {
    if let Ok(p) = s.parse::<u8>() {
        return (p <= 32).then_some(p);
    }
    let bits = u32::from(s.parse::<Ipv4Addr>().ok()?);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOWTO: &str = "\
# The Debian bonding how-to
auto lo
iface lo inet loopback

auto bond0
iface bond0 inet static
    address 192.168.122.188
    netmask 255.255.255.0
    network 192.168.122.0
    broadcast 192.168.122.255
    gateway 192.168.122.1
    bond-slaves enp1s0 enp7s0
    bond-mode balance-rr
    bond-miimon 100
    bond-downdelay 220
    bond-updelay 220
    bond-primary enp1s0 enp7s0
";

    fn parse_str(text: &str) -> Result<Spec> {
        parse(Path::new("t/interfaces"), text)
    }

    fn err(text: &str) -> String {
        parse_str(text).expect_err("must fail").to_string()
    }

    #[test]
    fn howto_file_parses_to_typed_settings() {
        let spec = parse_str(HOWTO).unwrap();
        let b = &spec.bond;
        assert_eq!(b.name, "bond0");
        let slaves: Vec<_> = b.slaves.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(slaves, ["enp1s0", "enp7s0"]);
        assert_eq!(b.mode(), Some(Mode::BalanceRr));
        let value = |name: &str| b.option(name).unwrap().value.clone();
        assert_eq!(value("miimon"), OptValue::Number(100));
        assert_eq!(value("updelay"), OptValue::Number(220));
        assert_eq!(b.option("updelay").unwrap().at.line, 16);
        assert_eq!(b.option("updelay").unwrap().at.column, 18);
        assert_eq!(b.option("updelay").unwrap().raw, "220");
        assert_eq!(value("downdelay"), OptValue::Number(220));
        assert_eq!(
            value("primary"),
            OptValue::Names(vec!["enp1s0".into(), "enp7s0".into()])
        );
        assert_eq!(
            b.address.as_ref().unwrap().value.to_string(),
            "192.168.122.188/24"
        );
        let lines: Vec<_> = spec.notes.iter().map(|n| n.at.line).collect();
        assert_eq!(
            lines,
            [9, 10, 11],
            "network, broadcast and gateway are noted as not applied"
        );
        assert_eq!(spec.sha256.len(), 64);
    }

    #[test]
    fn every_kind_of_value_is_typed() {
        let spec = parse_str(
            "iface bond0 inet manual\n bond-slaves a b\n bond-mode 4\n bond-lacp-rate fast\n bond-xmit-hash-policy layer3+4\n \
             bond-arp-ip-target 10.0.0.1 10.0.0.2\n bond-ad-actor-system 02:00:00:00:00:01\n bond-queue-id a:1 b:2\n \
             bond-active-slave none\n bond-min-links 1\n bond-give-a-chance 10\n",
        )
        .unwrap();
        let b = &spec.bond;
        assert_eq!(b.mode(), Some(Mode::Ieee8023ad));
        assert_eq!(b.option("lacp_rate").unwrap().value, OptValue::Number(1));
        assert_eq!(
            b.option("xmit_hash_policy").unwrap().value,
            OptValue::Number(1)
        );
        assert_eq!(
            b.option("arp_ip_target").unwrap().value,
            OptValue::Ipv4(vec![[10, 0, 0, 1].into(), [10, 0, 0, 2].into()])
        );
        assert_eq!(
            b.option("ad_actor_system").unwrap().value,
            OptValue::Mac([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(
            b.option("queue_id").unwrap().value,
            OptValue::PerSlave(vec![("a".into(), 1), ("b".into(), 2)])
        );
        assert_eq!(
            b.option("active_slave").unwrap().value,
            OptValue::Slave(None)
        );
        let notes: Vec<_> = spec.notes.iter().map(|n| n.message.as_str()).collect();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("bond-min-links") && n.contains("extension")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("bond-give-a-chance")),
            "{notes:?}"
        );
    }

    #[test]
    fn modes_by_name_and_number() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()), Some(m));
            assert_eq!(Mode::parse(&m.number().to_string()), Some(m));
        }
        assert_eq!(Mode::parse("7"), None);
        assert_eq!(Mode::parse("round-robin"), None);
    }

    #[test]
    fn continuation_lines_join_and_comments_are_skipped() {
        let spec = parse_str(
            "iface bond0 inet manual\n  # a comment\n  bond-slaves eth0 \\\n    eth1\n  bond-miimon 100\n",
        )
        .unwrap();
        let slaves: Vec<_> = spec.bond.slaves.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(slaves, ["eth0", "eth1"]);
        assert_eq!(spec.bond.option("miimon").unwrap().at.line, 5);
    }

    #[test]
    fn bond_master_on_a_slave_stanza_enslaves_it() {
        let spec = parse_str(
            "iface bond0 inet manual\n bond-slaves none\n\niface eth0 inet manual\n bond-master bond0\n",
        )
        .unwrap();
        assert_eq!(spec.bond.slaves[0].value, "eth0");
        assert_eq!(spec.bond.slaves[0].at.line, 5);
    }

    #[test]
    fn netmask_forms() {
        assert_eq!(netmask_prefix("255.255.255.0"), Some(24));
        assert_eq!(netmask_prefix("255.255.0.0"), Some(16));
        assert_eq!(netmask_prefix("255.255.255.255"), Some(32));
        assert_eq!(netmask_prefix("0.0.0.0"), Some(0));
        assert_eq!(netmask_prefix("255.0.255.0"), None);
        assert_eq!(netmask_prefix("24"), Some(24));
        assert_eq!(netmask_prefix("33"), None);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert_eq!(
            err("iface bond0 inet static\n address 10.0.0.1\n bond-slaves a b\n bond-miimon 1OO\n"),
            "t/interfaces:4:14: `bond-miimon` wants a whole number, not `1OO`"
        );
        assert_eq!(
            err("iface bond0 inet manual\n bond-slaves a\n bond-mode fastest\n"),
            "t/interfaces:3:12: `bond-mode` `fastest` is not one of: balance-rr, active-backup, \
             balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb"
        );
        assert_eq!(
            err("  bond-slaves a\n"),
            "t/interfaces:1:3: `bond-slaves` is neither a keyword nor inside an iface stanza"
        );
        assert_eq!(
            err("iface bond0 inet\n"),
            "t/interfaces:1:1: expected `iface NAME FAMILY METHOD`"
        );
        assert!(
            err("rename eth0=lan0\n")
                .starts_with("t/interfaces:1:1: `rename` is valid interfaces(5)")
        );
        assert!(
            err("iface bond0 inet manual\n bond-slaves a\n bond-lacp-rate quick\n")
                .contains("`bond-lacp-rate` `quick` is not one of: slow, fast")
        );
        assert_eq!(
            err("iface bond0 inet manual\n bond-slaves a\n bond-miimom 100\n"),
            "t/interfaces:3:2: unknown bond option `bond-miimom`; did you mean `bond-miimon`?"
        );
        assert!(
            err("iface bond0 inet manual\n bond-slaves a\n bond-packets-per-slave 70000\n")
                .contains("70000 is out of range (0-65535)")
        );
        assert!(
            err("iface bond0 inet manual\n bond-slaves a\n bond-arp-ip-target 10.0.0.1 255.255.255.255\n")
                .starts_with("t/interfaces:3:30: `255.255.255.255` cannot be an ARP target")
        );
        assert!(
            err(
                "iface bond0 inet manual\n bond-slaves a\n bond-ad-actor-system 01:00:5e:00:00:01\n"
            )
            .contains("not a unicast MAC")
        );
        assert!(
            err("iface bond0 inet manual\n bond-slaves a\n bond-queue-id a2\n")
                .contains("not SLAVE:NUMBER")
        );
        assert!(
            err("iface bond0 inet manual\n bond-slaves a a\n")
                .starts_with("t/interfaces:2:16: slave `a` listed twice")
        );
        assert!(
            err("iface bond0 inet static\n bond-slaves a\n")
                .contains("`static` needs an `address`")
        );
        assert!(
            err("iface bond0 inet manual\n bond-slaves a\n bond-miimon 1\n bond-miimon 2\n")
                .contains("given twice")
        );
        assert!(err("auto lo\niface lo inet loopback\n").contains("no bond here"));
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn source_globs_and_directories_are_followed_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let top = write(
            dir.path(),
            "interfaces",
            "auto lo\nsource interfaces.d/*.bond\nsource-directory slaves.d\n",
        );
        write(
            dir.path(),
            "interfaces.d/b.bond",
            "iface bond0 inet manual\n bond-slaves eth0\n bond-miimon 100\n",
        );
        write(
            dir.path(),
            "slaves.d/eth1",
            "iface eth1 inet manual\n bond-master bond0\n",
        );
        write(
            dir.path(),
            "slaves.d/eth2.dpkg-old",
            "iface eth2 inet manual\n bond-master bond0\n",
        );
        let spec = load(&top).unwrap();
        let slaves: Vec<_> = spec.bond.slaves.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(
            slaves,
            ["eth0", "eth1"],
            "run-parts names only: eth2.dpkg-old is skipped"
        );
        let miimon = spec.bond.option("miimon").unwrap();
        assert!(
            miimon.at.path.ends_with("interfaces.d/b.bond"),
            "{}",
            miimon.at
        );
        assert_eq!(miimon.at.line, 3);
        assert_eq!(spec.files.len(), 3);
    }

    #[test]
    fn source_cycles_are_errors_at_the_source_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a",
            "iface bond0 inet manual\n bond-slaves eth0\nsource b\n",
        );
        write(dir.path(), "b", "\nsource a\n");
        let e = load(&a).unwrap_err().to_string();
        assert!(e.contains("b:2:8: source cycle"), "{e}");
    }

    #[test]
    fn mapping_inet6_and_addressed_slaves_are_noted() {
        let spec = parse_str(
            "mapping eth0\n script /usr/local/sbin/map-scheme\n map HOME eth0-home\n\n\
             iface bond0 inet manual\n bond-slaves eth0 eth1\n\n\
             iface bond0 inet6 static\n address 2001:db8::1/64\n\n\
             iface eth1 inet dhcp\n",
        )
        .unwrap();
        let notes: Vec<_> = spec
            .notes
            .iter()
            .map(|n| (n.at.line, n.message.as_str()))
            .collect();
        assert!(
            notes
                .iter()
                .any(|(l, m)| *l == 1 && m.contains("mapping stanza for eth0")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|(l, m)| *l == 8 && m.contains("inet6 stanza of bond0")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|(l, m)| *l == 11 && m.contains("slave eth1 is also configured `inet dhcp`")),
            "{notes:?}"
        );
        let both = err(
            "iface bond0 inet manual\n bond-slaves a\niface bond0 inet6 manual\n bond-mode 1\n",
        );
        assert!(
            both.contains("bond options in two stanzas of bond0"),
            "{both}"
        );
    }
}
