//! The fuzz targets of fuzz/ (host_frame, dhcp, dns_udp, dns_tcp,
//! stream_framing), each run for a bounded time by libFuzzer through
//! cargo-fuzz on the stable toolchain (`--sanitizer none`: coverage-guided by
//! SanitizerCoverage, no nightly flag; tests/setup.sh installs cargo-fuzz).
//! The fuzz crate is built into its own target directory, fuzz/target, so it
//! does not wait on the workspace's build lock. Each target starts from its
//! seeds (fuzz/corpus/TARGET, read only: new inputs go to a scratch corpus)
//! and runs `FUZZ_SECONDS` seconds (`VMLAN_FUZZ_SECONDS` overrides) with a
//! 5-second limit per input (a hang) and a 1 GiB RSS limit (unbounded growth).
//! Any crash, timeout or out-of-memory fails the test, which names the input
//! libFuzzer saved (fuzz/artifacts/TARGET/...) and shows the end of its log;
//! so does a run that ends without having run any input.
//! README.md ("Fuzzing") gives the command for a long run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fuzz targets, each a binary of fuzz/Cargo.toml.
const TARGETS: [&str; 5] = ["host_frame", "dhcp", "dns_udp", "dns_tcp", "stream_framing"];
/// Seconds each target runs by default.
const FUZZ_SECONDS: u64 = 20;
/// libFuzzer's options: a per-input time limit (s) and a memory limit (MiB).
const LIMITS: [&str; 2] = ["-timeout=5", "-rss_limit_mb=1024"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// `cargo fuzz SUBCOMMAND --sanitizer none ARGS`, in fuzz/, building into fuzz/target.
fn cargo_fuzz(sub: &str, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(fuzz_dir())
        .args(["fuzz", sub, "--sanitizer", "none"])
        .args(args)
        .env("CARGO_TARGET_DIR", fuzz_dir().join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    c
}

/// Runs `cmd` with its output in `log`, killing it after `limit`; true when it exited 0.
fn run_logged(cmd: &mut Command, log: &Path, limit: Duration) -> bool {
    let out = fs::File::create(log).expect("create the log");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run cargo fuzz: tests/setup.sh installs it (cargo install cargo-fuzz --locked)");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for cargo fuzz") {
            return status.success();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("killed after {limit:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `n` lines of `log`.
fn tail(log: &Path, n: usize) -> String {
    let text = String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn fuzz_targets_find_no_crash_hang_or_growth() {
    let seconds: u64 = std::env::var("VMLAN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(FUZZ_SECONDS);
    let scratch = std::env::temp_dir().join(format!("vmlan-fuzz-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).unwrap();

    let started = Instant::now();
    let log = scratch.join("build.log");
    let built = run_logged(&mut cargo_fuzz("build", &[]), &log, Duration::from_secs(900));
    assert!(built, "cargo fuzz build failed:\n{}", tail(&log, 40));
    eprintln!("fuzz targets built in {:.0?}", started.elapsed());

    let mut failed = vec![];
    for target in TARGETS {
        let corpus = scratch.join(target);
        fs::create_dir_all(&corpus).unwrap();
        let seeds = fuzz_dir().join("corpus").join(target);
        let max_time = format!("-max_total_time={seconds}");
        let args = [
            target,
            corpus.to_str().unwrap(),
            seeds.to_str().unwrap(),
            "--",
            &max_time,
        ];
        let log = scratch.join(format!("{target}.log"));
        let t = Instant::now();
        let mut cmd = cargo_fuzz("run", &args);
        cmd.args(LIMITS);
        let clean = run_logged(&mut cmd, &log, Duration::from_secs(seconds + 120));
        // libFuzzer's closing line, "Done N runs in S second(s)": it must have run inputs.
        let done = tail(&log, 40)
            .lines()
            .rfind(|l| l.starts_with("Done "))
            .map(str::to_string);
        let ran = done
            .as_deref()
            .and_then(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        if clean && ran > 0 {
            eprintln!("{target}: clean for {:.0?}: {}", t.elapsed(), done.unwrap_or_default());
        } else {
            let log_text = fs::read_to_string(&log).unwrap_or_default();
            let artifact = log_text
                .lines()
                .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_string()))
                .unwrap_or_else(|| "(none saved)".into());
            let lines: Vec<&str> = log_text.lines().collect();
            let panic = match lines.iter().position(|l| l.contains("panicked at")) {
                Some(i) => lines[i..lines.len().min(i + 2)].join("\n"),
                None => String::new(),
            };
            eprintln!(
                "{target} FAILED; input: {artifact}; log: {}\n{panic}\n...\n{}",
                log.display(),
                tail(&log, 30)
            );
            failed.push(format!("{target} (input {artifact})"));
        }
    }
    assert!(failed.is_empty(), "fuzz targets failed: {failed:?}");
    let _ = fs::remove_dir_all(&scratch);
}
