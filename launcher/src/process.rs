//! Processes of a cluster: running a command to completion, spawning the hub
//! detached (own process group, output to a log file, pid file), telling whether
//! a recorded pid is still ours and alive, QMP `system_powerdown`, and stopping
//! with a grace period (SIGTERM, then SIGKILL).
//!
//! Sources: QMP specification (docs/interop/qmp-spec: greeting, `qmp_capabilities`
//! negotiation, `{"return": ...}` replies and asynchronous events); QMP reference
//! `system_powerdown` (an ACPI power button press); kill(2), proc(5) for
//! `/proc/PID/stat` and `/proc/PID/cmdline`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Runs `argv` (program first) to completion. Errors: it cannot start (with a
/// hint when the program is missing) or exits non-zero (with its stderr).
pub fn run(argv: &[String]) -> Result<String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(&argv[0], e))?;
    finished(argv, out)
}

/// The stdout of a finished command, or an error with its status and stderr.
fn finished(argv: &[String], out: std::process::Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `argv` to completion as [`run`] does, but for at most `limit`: past
/// it the command is killed, and so is the process whose pid `pid_file` holds
/// by then (QEMU's daemonized child writes its pid there before it waits), and
/// the error says so with `hint`. Used for QEMU's start, which waits without
/// end for a vhost-user backend to connect (QEMU net/vhost-user.c).
pub fn run_within(argv: &[String], limit: Duration, pid_file: &Path, hint: &str) -> Result<String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&argv[0], e))?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(pid) = read_pid(pid_file).filter(|p| alive(*p)) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            bail!(
                "`{}` did not finish starting within {} s; stopped it{hint}",
                argv[0],
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    finished(argv, child.wait_with_output()?)
}

fn spawn_error(prog: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("{prog} not found on PATH: install QEMU (Debian: apt-get install qemu-system-x86 qemu-utils)")
    } else {
        anyhow::anyhow!("cannot run {prog}: {e}")
    }
}

/// Errors unless `prog --version` runs: used to check qemu-system-x86_64 and qemu-img before anything starts.
pub fn require_tool(prog: &str) -> Result<()> {
    let st = Command::new(prog)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| spawn_error(prog, e))?;
    if !st.success() {
        bail!("{prog} --version failed ({st}): is QEMU installed correctly?");
    }
    Ok(())
}

/// Spawns `argv` detached from the caller's terminal: its own process group,
/// stdin from /dev/null, stdout and stderr appended to `log`, extra `env`. Writes
/// the pid to `pid_file` and returns it. The caller does not wait for it.
pub fn spawn_detached(argv: &[String], env: &[(&str, &str)], log: &Path, pid_file: &Path) -> Result<u32> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .process_group(0)
        .spawn()
        .map_err(|e| spawn_error(&argv[0], e))?;
    let pid = child.id();
    std::fs::write(pid_file, format!("{pid}\n")).with_context(|| format!("write {}", pid_file.display()))?;
    Ok(pid)
}

/// The pid in `pid_file`, if it exists and holds a number.
pub fn read_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// True if `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; STATE follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The pid in `pid_file` if that process is alive and its command line mentions
/// `marker` (a path of this cluster's state directory), so a recycled pid is never taken for ours.
pub fn running(pid_file: &Path, marker: &Path) -> Option<u32> {
    let pid = read_pid(pid_file)?;
    if !alive(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let marker = marker.as_os_str().as_encoded_bytes();
    cmdline.windows(marker.len()).any(|w| w == marker).then_some(pid)
}

/// Sends QMP `system_powerdown` (an ACPI power button press) over the QMP socket
/// `sock`: reads the greeting, negotiates with `qmp_capabilities`, sends the
/// command and waits for its `return` (events in between are skipped). Each
/// read waits at most 5 s. Errors: the socket cannot be reached, or QEMU answers
/// with an `error`.
pub fn qmp_powerdown(sock: &Path) -> Result<()> {
    let stream = UnixStream::connect(sock).with_context(|| format!("QMP {}", sock.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.contains("\"QMP\"") {
        bail!("QMP {}: unexpected greeting {line:?}", sock.display());
    }
    for cmd in ["qmp_capabilities", "system_powerdown"] {
        writeln!(w, "{{\"execute\": \"{cmd}\"}}")?;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("QMP {}: closed before answering {cmd}", sock.display());
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v.get("return").is_some() {
                break;
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {}: {cmd}: {e}", sock.display());
            }
        }
    }
    Ok(())
}

/// Waits up to `limit` for `pid` to exit; true if it did.
pub fn wait_exit(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Stops `pid`: SIGTERM, up to 5 s for it to exit, then SIGKILL and up to 5 s more.
/// Returns false if it still runs after that.
pub fn terminate(pid: u32) -> bool {
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    if wait_exit(pid, Duration::from_secs(5)) {
        return true;
    }
    let _ = kill(p, Signal::SIGKILL);
    wait_exit(pid, Duration::from_secs(5))
}

/// True if something listens on (or holds) TCP 127.0.0.1:`port`: binding it fails.
pub fn tcp_port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// What a DNS listener at `addr` (UDP and TCP, as the hub's `--dns-listen`)
/// could not bind: `Some("UDP")` or `Some("TCP")` when something holds that
/// socket, `None` when both bind (they are closed again at once).
pub fn dns_listen_taken(addr: std::net::SocketAddr) -> Option<&'static str> {
    if std::net::UdpSocket::bind(addr).is_err() {
        return Some("UDP");
    }
    if std::net::TcpListener::bind(addr).is_err() {
        return Some("TCP");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_within_gives_up_and_stops_the_daemonized_child() {
        let dir = std::env::temp_dir().join(format!("vmlan-run-within-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("child.pid");
        // A "daemonized child" that writes its pid, and a parent that waits forever.
        let script = format!("sleep 60 & echo $! > {}; exec sleep 60", pid_file.display());
        let argv: Vec<String> = ["sh", "-c", &script].iter().map(|s| s.to_string()).collect();
        let start = Instant::now();
        let err = run_within(&argv, Duration::from_millis(300), &pid_file, ": a hint").unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            "`sh` did not finish starting within 0 s; stopped it: a hint"
        );
        let child = read_pid(&pid_file).unwrap();
        let gone = Instant::now();
        while alive(child) && gone.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(child), "the daemonized child still runs");
        // A command that ends in time returns its output.
        let ok: Vec<String> = ["sh", "-c", "echo fine"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            run_within(&ok, Duration::from_secs(10), &pid_file, "").unwrap(),
            "fine\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn spawn_alive_running_terminate() {
        let dir = std::env::temp_dir().join(format!("vmlan-proc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("marker");
        let argv: Vec<String> = ["sh", "-c", "echo started; exec sleep 60", &marker.display().to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pid = spawn_detached(&argv, &[], &dir.join("log"), &dir.join("pid")).unwrap();
        assert_eq!(read_pid(&dir.join("pid")), Some(pid));
        assert!(alive(pid));
        // `sh -c CMD NAME`: the marker is $0; after exec, `sleep 60` no longer holds it.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(running(&dir.join("pid"), &marker), None);
        assert_eq!(running(&dir.join("pid"), Path::new("60")), Some(pid));
        assert!(terminate(pid));
        assert!(!alive(pid), "a reaped or zombie child is not alive");
        assert!(std::fs::read_to_string(dir.join("log")).unwrap().contains("started"));
        assert!(run(&["false".to_string()]).unwrap_err().to_string().contains("failed"));
        assert!(require_tool("vmlan-no-such-tool")
            .unwrap_err()
            .to_string()
            .contains("not found on PATH"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn qmp_against_a_fake_server() {
        let dir = std::env::temp_dir().join(format!("vmlan-qmp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("qmp");
        let _ = std::fs::remove_file(&sock);
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut got = vec![];
            for reply in [r#"{"return": {}}"#, r#"{"event": "POWERDOWN"}"#] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                got.push(line.trim().to_string());
                writeln!(w, "{reply}").unwrap();
            }
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            got
        });
        qmp_powerdown(&sock).unwrap();
        let got = t.join().unwrap();
        assert_eq!(
            got,
            [
                r#"{"execute": "qmp_capabilities"}"#,
                r#"{"execute": "system_powerdown"}"#
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
