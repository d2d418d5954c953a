//! The report's schema and its HTML page, on real reports. The committed example report must
//! validate against the committed schema, and reports that break it must not. A real run of
//! the how-to's case (on the kernel `--kernel auto` picks) writes a report that must validate
//! and an HTML page that `report html` renders identically from the saved report; headless
//! Chromium takes a screenshot of the page, and the screenshot must show the failover
//! timeline: both slaves' lanes, the cut, the model's window and the bars up to the commits, at
//! the places the renderer puts them. Listed as ignored where there is no bonding kernel or no
//! Chromium (`just setup` installs Debian's `chromium`).

mod common;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bondcheck::html::{self, Rgb};
use bondcheck::kernel::{self, Choice};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};

const HOWTO: &str = "suites/debian-howto";
/// A change made to a real report, to see a check catch it.
type Change = fn(&mut Value);
/// `bondcheck run`'s default number of timing trials.
const TRIALS: usize = 5;

fn main() {
    let args = Arguments::from_args();
    let no_kernel = kernel::select(Choice::Auto).err().map(|e| e.to_string());
    let browser = chromium();
    if !args.list {
        if let Some(why) = &no_kernel {
            eprintln!("screenshot trial skipped: {why}");
        } else if browser.is_none() {
            eprintln!("screenshot trial skipped: no chromium on PATH (`just setup` installs it)");
        }
    }
    let unavailable = no_kernel.is_some() || browser.is_none();
    let trials = vec![
        Trial::test("schema::example_report_validates", example_validates),
        Trial::test("schema::refuses_reports_that_break_it", schema_refuses),
        Trial::test(
            "schema::report_schema_prints_the_committed_file",
            schema_printed,
        ),
        Trial::test("html::bad_input_is_one_line_and_exit_2", html_bad_input),
        Trial::test(
            "html::real_run_screenshot_shows_the_failover_timeline",
            move || {
                real_run_screenshot(
                    browser
                        .as_deref()
                        .expect("listed as ignored without chromium"),
                )
            },
        )
        .with_ignored_flag(unavailable),
    ];
    libtest_mimic::run(&args, trials).exit()
}

fn example() -> Value {
    let path = common::repo().join("reports/example-debian-howto.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("example report"))
        .expect("example report is JSON")
}

fn example_validates() -> Result<(), Failed> {
    match common::schema_errors(&example()).as_slice() {
        [] => Ok(()),
        errors => Err(errors.join("\n").into()),
    }
}

/// The validation's own negative control: each change breaks the schema and must be caught.
fn schema_refuses() -> Result<(), Failed> {
    let breakages: [(&str, Change); 5] = [
        ("another schema id", |r| {
            r["schema"] = json!("bondcheck-report/2")
        }),
        ("no kernel", |r| {
            r.as_object_mut().unwrap().remove("kernel");
        }),
        ("a status that is not one", |r| {
            r["cases"][0]["checks"][0]["status"] = json!("passed")
        }),
        ("a duration that is text", |r| {
            r["cases"][0]["duration_ms"] = json!("3.5 s")
        }),
        ("an arrival without its slave", |r| {
            r["cases"][0]["traffic"]["sent"]["arrivals"][0]
                .as_object_mut()
                .unwrap()
                .remove("slave");
        }),
    ];
    for (what, break_it) in breakages {
        let mut doc = example();
        break_it(&mut doc);
        if common::schema_errors(&doc).is_empty() {
            return Err(format!("a report with {what} validates against the schema").into());
        }
    }
    Ok(())
}

fn schema_printed() -> Result<(), Failed> {
    let out = bondcheck(&["report", "schema"])?;
    let committed = std::fs::read(common::repo().join(bondcheck::report::SCHEMA_FILE))?;
    if out.status.code() != Some(0) || out.stdout != committed {
        return Err(format!(
            "`bondcheck report schema` ({:?}) does not print the committed schema",
            out.status
        )
        .into());
    }
    Ok(())
}

fn html_bad_input() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let not_a_report = dir.path().join("not-a-report.json");
    std::fs::write(&not_a_report, "{\"schema\": \"something-else\"}")?;
    for input in [dir.path().join("missing.json"), not_a_report] {
        let out_file = dir.path().join("out.html");
        let out = bondcheck(&[
            "report",
            "html",
            input.to_str().unwrap(),
            out_file.to_str().unwrap(),
        ])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = input.file_name().unwrap().to_string_lossy();
        if out.status.code() != Some(2)
            || stderr.lines().count() != 1
            || !stderr.contains(name.as_ref())
            || out_file.exists()
        {
            return Err(format!(
                "report html {name}: expected exit 2, one line naming the file and no page; \
                 got {:?}: {stderr}",
                out.status
            )
            .into());
        }
    }
    Ok(())
}

/// Debian's `chromium`, if it is on PATH.
fn chromium() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

fn bondcheck(args: &[&str]) -> Result<std::process::Output, Failed> {
    Ok(Command::new(env!("CARGO_BIN_EXE_bondcheck"))
        .current_dir(common::repo())
        .args(args)
        .output()?)
}

fn real_run_screenshot(browser: &Path) -> Result<(), Failed> {
    // Kept after the test, for a person to look at: the test prints where.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    std::fs::create_dir_all(&dir)?;
    let (report, page, again, shot) = (
        dir.join("debian-howto.json"),
        dir.join("debian-howto.html"),
        dir.join("debian-howto-again.html"),
        dir.join("debian-howto.png"),
    );
    for f in [&report, &page, &again, &shot] {
        let _ = std::fs::remove_file(f);
    }
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    let out = bondcheck(&[
        "run",
        "--kernel=auto",
        "--report",
        &s(&report),
        "--html",
        &s(&page),
        HOWTO,
    ])?;
    if !matches!(out.status.code(), Some(0 | 1)) || !report.exists() || !page.exists() {
        return Err(format!(
            "bondcheck run {HOWTO} ended with {:?}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let errors = common::schema_errors(&doc);
    if !errors.is_empty() {
        return Err(format!("the run's report breaks the schema:\n{}", errors.join("\n")).into());
    }
    // One renderer, one input: the page of the saved report is the run's page.
    let out = bondcheck(&["report", "html", &s(&report), &s(&again)])?;
    if out.status.code() != Some(0) || std::fs::read(&again)? != std::fs::read(&page)? {
        return Err(format!(
            "`report html` of the run's report differs from the run's page ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    screenshot(browser, &page, &shot, &dir)?;
    println!("screenshot: {}", shot.display());
    let down = doc["cases"][0]["checks"]
        .as_array()
        .and_then(|c| c.iter().position(|c| c["check"] == "timing.downdelay"))
        .ok_or("the report has no timing.downdelay check")?;
    let bound = |name: &str| {
        doc["cases"][0]["checks"][down]["measurements"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == name))
            .and_then(|m| m["value"].as_f64())
            .ok_or(format!("timing.downdelay has no {name} measurement"))
    };
    let (lower, upper) = (bound("window_lower")?, bound("window_upper")?);
    let found = check_failover_timeline(&Image::read(&shot)?, lower, upper)
        .map_err(|e| format!("{e} (screenshot: {})", shot.display()))?;
    println!("{found}");

    // The check's own negative controls: pages of the same report without the window, and
    // with one slave's traffic lane gone, must fail it, saying what is missing.
    let controls: [(&str, Change, &str); 2] = [
        (
            "no-window",
            |doc| {
                for check in doc["cases"][0]["checks"].as_array_mut().unwrap() {
                    check["measurements"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|m| !m["name"].as_str().unwrap().starts_with("window_"))
                }
            },
            "no shaded window",
        ),
        (
            "one-lane",
            |doc| {
                let sent = &mut doc["cases"][0]["traffic"]["sent"];
                sent["captures"].as_array_mut().unwrap().truncate(1);
                sent["arrivals"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|a| a["slave"] == 0)
            },
            "no lane stripe of the other slave's colour",
        ),
    ];
    for (name, change, must_say) in controls {
        let mut broken = doc.clone();
        change(&mut broken);
        let (json, page, png) = (
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}.html")),
            dir.join(format!("{name}.png")),
        );
        std::fs::write(&json, serde_json::to_vec(&broken)?)?;
        let out = bondcheck(&["report", "html", &s(&json), &s(&page)])?;
        if out.status.code() != Some(0) {
            return Err(format!("report html of the {name} control: {:?}", out.status).into());
        }
        screenshot(browser, &page, &png, &dir)?;
        match check_failover_timeline(&Image::read(&png)?, lower, upper) {
            Err(e) if e.contains(must_say) => println!("negative control {name} held: {e}"),
            other => {
                return Err(format!(
                    "negative control {name}: the check must fail saying `{must_say}`, got \
                     {other:?} (screenshot: {})",
                    png.display()
                )
                .into());
            }
        }
    }
    Ok(())
}

/// Headless Chromium's screenshot of `page`, as `man chromium` and the machine's closed network
/// want it: no sandbox (root), no GPU, no background connections, a fresh profile.
fn screenshot(browser: &Path, page: &Path, png: &Path, dir: &Path) -> Result<(), Failed> {
    let profile = tempfile::tempdir_in(dir)?;
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1100,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // A browser that hangs must not hang the test: poll its exit against a deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Err("chromium took over 60 s to take the screenshot".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() || !png.exists() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut stderr)?;
        }
        return Err(format!("chromium ended with {status} and no screenshot:\n{stderr}").into());
    }
    Ok(())
}

/// A screenshot as 8-bit RGB.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn read(path: &Path) -> Result<Image, Failed> {
        let mut decoder = png::Decoder::new(BufReader::new(std::fs::File::open(path)?));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info()?;
        let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
        let info = reader.next_frame(&mut buf)?;
        let channels = info.color_type.samples();
        let (width, height) = (info.width as usize, info.height as usize);
        let mut rgb = Vec::with_capacity(width * height);
        for y in 0..height {
            let line = &buf[y * info.line_size..][..width * channels];
            for px in line.chunks(channels) {
                rgb.push(match channels {
                    1 | 2 => [px[0]; 3],
                    _ => [px[0], px[1], px[2]],
                });
            }
        }
        Ok(Image { width, height, rgb })
    }

    fn is(&self, x: usize, y: usize, c: Rgb) -> bool {
        self.rgb[y * self.width + x] == [c.0, c.1, c.2]
    }

    /// Runs of exactly colour `c`, (x, y, length), at least `min` long: across when `across`,
    /// else down.
    fn runs(&self, c: Rgb, min: usize, across: bool) -> Vec<(usize, usize, usize)> {
        let (outer, inner) = if across {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        };
        let mut out = Vec::new();
        for o in 0..outer {
            let mut start = None;
            for i in 0..=inner {
                let (x, y) = if across { (i, o) } else { (o, i) };
                let hit = i < inner && self.is(x, y, c);
                match (hit, start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        if i - s >= min {
                            out.push(if across { (s, o, i - s) } else { (o, s, i - s) });
                        }
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// The first timeline of the page is the cuts': the model's window shaded over the cut slave's
/// lane, the cut mark at 0 ms where the renderer puts time 0, the cut slave's bars from the cut
/// into the window, and both slaves' lane stripes at the renderer's stripe position, one lane
/// below the other.
fn check_failover_timeline(image: &Image, lower: f64, upper: f64) -> Result<String, String> {
    // The window: its topmost long run across (the lane's padding above the first trial's bar).
    let window = image
        .runs(html::WINDOW, 40, true)
        .into_iter()
        .min_by_key(|&(_, y, _)| y)
        .ok_or("no shaded window in the screenshot")?;
    let (wx0, wy, wlen) = window;
    let scale = wlen as f64 / (upper - lower);
    // The cut: a long run down in the cut colour, left of the window, across the window's top.
    let cut = image
        .runs(html::CUT, 40, false)
        .into_iter()
        .find(|&(x, y, len)| x < wx0 && y <= wy && y + len > wy)
        .ok_or("no cut mark through the window's lane, left of the window")?;
    let cut_x = cut.0;
    let expected_gap = lower * scale;
    let gap = (wx0 - cut_x) as f64;
    if (gap - expected_gap).abs() > 3.0 {
        return Err(format!(
            "the window starts {gap} px after the cut; at {scale:.2} px/ms ({wlen} px for \
             ({lower}, {upper}] ms) it should start {expected_gap:.0} px after it"
        ));
    }
    // Both slaves' lanes: stripes in their colours at the renderer's stripe position.
    let stripe_x = cut_x as f64 - (html::PLOT_LEFT - html::STRIPE_LEFT);
    let stripe = |colour: Rgb| {
        image
            .runs(colour, 15, false)
            .into_iter()
            .filter(|&(x, _, _)| (x as f64 - stripe_x).abs() <= 2.0)
            .find(|&(_, y, len)| y + len > wy.saturating_sub(10))
    };
    let (_, first_y, first_len) =
        stripe(html::LANE_COLOURS[0]).ok_or("no lane stripe of the cut slave's colour")?;
    if !(first_y..first_y + first_len).contains(&wy) {
        return Err(format!(
            "the cut slave's lane (y {first_y}..{}) does not hold the window (y {wy})",
            first_y + first_len
        ));
    }
    let (_, second_y, _) =
        stripe(html::LANE_COLOURS[1]).ok_or("no lane stripe of the other slave's colour")?;
    if second_y <= first_y + first_len {
        return Err(format!(
            "the other slave's lane (y {second_y}) is not below the cut slave's (y {first_y}..{})",
            first_y + first_len
        ));
    }
    // The cut slave's bars: from right after the cut, across the window's start, one per trial
    // (each bar a few pixel rows tall).
    let rows: Vec<usize> = image
        .runs(html::LANE_COLOURS[0], 1, true)
        .into_iter()
        .filter(|&(x, y, len)| {
            x <= cut_x + 3 && x + len > wx0 && (first_y..first_y + first_len).contains(&y)
        })
        .map(|(_, y, _)| y)
        .collect();
    let bars = 1 + rows.windows(2).filter(|w| w[1] > w[0] + 1).count();
    if rows.is_empty() || bars != TRIALS {
        return Err(format!(
            "expected {TRIALS} bars of the cut slave from the cut into the window, found {}",
            if rows.is_empty() { 0 } else { bars }
        ));
    }
    Ok(format!(
        "timeline: cut at x {cut_x}, window x {wx0}..{} from y {wy} ({scale:.2} px/ms), lanes at \
         y {first_y} and {second_y}, {bars} bars",
        wx0 + wlen
    ))
}
