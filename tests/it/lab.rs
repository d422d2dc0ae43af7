//! `chaoslab lab` end to end on loopback: the tour runs against the lab's own processes to the
//! verdict its file states, the report is written in every form, `chaoslab report` renders the
//! stored report as the run printed it, the HTML opens in headless Chromium with its charts
//! drawn, bad files are refused with the reason, and nothing is left running.

use crate::support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use support::repo_path;

const BIN: &str = env!("CARGO_BIN_EXE_chaoslab");

fn chaoslab(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("chaoslab runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaoslab-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The `# expect:` verdict of an example file.
fn expected_verdict(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("the file");
    text.lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} states no `# expect:` verdict", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn the_tour_runs_on_loopback_to_its_stated_verdict_and_writes_its_report() {
    let _group = crate::support::group("lab");
    let out = scratch("tour");
    let dir = out.to_str().expect("a UTF-8 path");
    let run = chaoslab(&["lab", "--out", dir]);
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    eprintln!("{stderr}\n{stdout}");
    let expected = expected_verdict(&repo_path("examples/lab/tour.yaml"));
    assert!(stdout.starts_with(&format!("# Drill tour: {expected}\n")), "{stdout}\n{stderr}");
    assert_eq!(run.status.code(), Some(if expected == "Pass" { 0 } else { 1 }), "{stderr}");
    // The milestones were told as they happened, in order.
    let order: Vec<usize> = ["load started", "injected slow-inventory", "reverted slow-inventory", "load stopped"]
        .iter()
        .map(|m| stderr.find(m).unwrap_or_else(|| panic!("no {m:?} in\n{stderr}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{stderr}");

    for file in ["report.json", "report.md", "report.html", "traffic.svg", "latency.svg"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("JSON");
    assert_eq!(report["schema"], "chaoslab.dev/report/v1");
    assert_eq!(report["verdict"], expected.as_str());
    // 30 s of load at 20 req/s, measured second by second; the fault had its effect.
    let seconds = report["seconds"].as_array().expect("seconds");
    assert!(seconds.len() >= 29, "{} seconds", seconds.len());
    let sent: u64 = seconds.iter().filter_map(|s| s["requests"].as_u64()).sum();
    assert!((580..=620).contains(&sent), "{sent} requests sent");
    assert_eq!(report["faults"][0]["observed"], true, "{}", report["faults"]);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path("docs/report.schema.json")).expect("the schema"))
            .expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("a schema");
    let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");

    // The stored report renders as the run printed it.
    let rendered = chaoslab(&["report", dir]);
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    assert_eq!(text(&rendered.stdout), stdout);

    screenshot_shows_the_charts(&out.join("report.html"));
    let _ = std::fs::remove_dir_all(&out);
}

/// Opens `page` in headless Chromium, takes a screenshot and checks the charts were drawn:
/// the image has the asked size and its lower part (where the charts are) is far from blank.
fn screenshot_shows_the_charts(page: &Path) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is not installed: run hack/deps.sh (it installs the Debian package)");
    let shot = page.with_file_name("screenshot.png");
    let profile = page.with_file_name("chromium-profile");
    let run = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,2400"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(shot.is_file(), "no screenshot: {}", text(&run.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).expect("the screenshot")));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    assert_eq!((info.width, info.height), (1100, 2400));
    let channels = info.line_size / info.width as usize;
    // The charts sit below the tables: count the pixels there that are not white.
    let lower = &pixels[info.line_size * 1300..info.line_size * info.height as usize];
    let inked = lower.chunks(channels).filter(|p| p.iter().take(3).any(|&c| c < 240)).count();
    let share = inked as f64 / (lower.len() / channels) as f64;
    assert!(share > 0.05, "only {:.1} % of the charts' area is drawn", share * 100.0);
}

#[test]
fn files_the_lab_cannot_run_are_refused_with_the_reason() {
    let _group = crate::support::group("lab");
    let loadtest = chaoslab(&["lab", repo_path("examples/loadtest.yaml").to_str().expect("path")]);
    assert!(!loadtest.status.success());
    assert!(text(&loadtest.stderr).contains("a LoadTest runs with `chaoslab load -f"), "{}", text(&loadtest.stderr));

    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).expect("a dir");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: chaoslab.dev/v1alpha1\nkind: PodKill\nmetadata: {name: x}\nspec: {}\n")
        .expect("written");
    let refused = chaoslab(&["lab", bad.to_str().expect("path")]);
    assert!(!refused.status.success());
    let allowed = "allowed: Drill, CircuitBreakerTrial, AutoscalingCheck";
    assert!(text(&refused.stderr).contains(allowed), "{}", text(&refused.stderr));

    // The lab autoscales the frontend only, as the chart does: a check of catalog is refused
    // before any load is sent.
    let check = dir.join("catalog-scales.yaml");
    std::fs::write(&check, "apiVersion: chaoslab.dev/v1alpha1\nkind: AutoscalingCheck\nmetadata: {name: x}\nspec:\n  target: {deployment: catalog}\n  load: {target: {service: {name: catalog, port: http}}, rate: 5, duration: 5s}\n")
        .expect("written");
    let refused = chaoslab(&["lab", check.to_str().expect("path")]);
    assert_eq!(refused.status.code(), Some(2), "an Error: {}", text(&refused.stderr));
    let why =
        r#"spec.target.deployment: no HorizontalPodAutoscaler scales "catalog" here (the lab's HPAs scale: frontend)"#;
    let stderr = text(&refused.stderr);
    assert!(stderr.contains(why), "{stderr}");
    // Before anything started: no lab, no load.
    assert!(!stderr.contains("lab: ") && !stderr.contains("of load on"), "{stderr}");

    // Installed as a kubectl plugin (`make install` links kubectl-chaoslab), the same commands.
    let plugin = dir.join("kubectl-chaoslab");
    std::os::unix::fs::symlink(BIN, &plugin).expect("a link");
    let schema = Command::new(&plugin).args(["report", "--schema"]).output().expect("the plugin runs");
    assert!(schema.status.success() && text(&schema.stdout).contains("chaoslab.dev/report/v1"));

    // A stored report of another schema is refused, naming the one this chaoslab reads.
    std::fs::write(dir.join("report.json"), r#"{"schema": "chaoslab.dev/report/v0"}"#).expect("written");
    let old = chaoslab(&["report", dir.to_str().expect("path")]);
    assert!(!old.status.success());
    assert!(text(&old.stderr).contains("this chaoslab reads chaoslab.dev/report/v1"), "{}", text(&old.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
