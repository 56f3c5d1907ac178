//! `vmlan console NODE`, `vmlan logs NODE` and `vmlan ssh NODE`: attach the
//! terminal to a node's serial console (QEMU's chardev unix socket; detach with
//! Ctrl-], as telnet), print or follow its console log, and the ssh command line
//! that uses the generated ssh config.
//!
//! Sources: QEMU `-chardev socket,server=on` (one client at a time; the guest
//! keeps running when it leaves); termios(3) `cfmakeraw`; poll(2); ssh(1) `-F`.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios;

use crate::state::StateDir;

/// The byte that detaches from the console: Ctrl-] (0x1d), as telnet's escape.
pub const DETACH: u8 = 0x1d;

/// Restores the terminal's settings when dropped.
struct RawMode {
    saved: termios::Termios,
}

impl RawMode {
    /// Puts stdin in raw mode when it is a terminal (None when it is not).
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Attaches stdin/stdout to `node`'s serial console until Ctrl-] (or, when stdin
/// is not a terminal, until it ends) or QEMU closes the console. Errors: the
/// node does not exist or is not running (its socket refuses), or I/O fails.
pub fn console(sd: &StateDir, node: &str) -> Result<()> {
    sd.read()?.node(node)?;
    let sock = sd.console(node);
    let mut s = UnixStream::connect(&sock)
        .with_context(|| format!("{node}'s console {} (is the node running?)", sock.display()))?;
    eprint!("Connected to {node}'s serial console; detach with Ctrl-]\r\n");
    let raw = RawMode::enter();
    let mut stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        let (si, so) = {
            let mut fds = [
                PollFd::new(s.as_fd(), PollFlags::POLLIN),
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            ];
            poll(&mut fds, PollTimeout::NONE)?;
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if si {
            let n = s.read(&mut buf)?;
            if n == 0 {
                drop(raw);
                eprintln!("\n{node}'s console closed");
                return Ok(());
            }
            stdout.write_all(&buf[..n])?;
            stdout.flush()?;
        }
        if so {
            let n = stdin.read(&mut buf)?;
            if n == 0 {
                // Not a terminal and its input ended: keep showing output for a moment, then leave.
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut rest = vec![];
                let _ = s.read_to_end(&mut rest);
                stdout.write_all(&rest)?;
                return Ok(());
            }
            if let Some(p) = buf[..n].iter().position(|&b| b == DETACH) {
                s.write_all(&buf[..p])?;
                drop(raw);
                eprintln!("\ndetached from {node}'s console");
                return Ok(());
            }
            s.write_all(&buf[..n])?;
        }
    }
}

/// Prints `node`'s console log; with `follow`, keeps printing what is appended
/// (until interrupted). Errors: no such node, or the log cannot be read.
pub fn logs(sd: &StateDir, node: &str, follow: bool) -> Result<()> {
    sd.read()?.node(node)?;
    let path = sd.log(node);
    let mut f = std::fs::File::open(&path).with_context(|| format!("{node}'s console log {}", path.display()))?;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 8192];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        if !follow {
            return Ok(());
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `ssh -F STATE/ssh_config OPTIONS... NODE [COMMAND...]`. Errors: no such node
/// or no ssh config (the cluster was not brought up here).
pub fn ssh_argv(sd: &StateDir, node: &str, options: &[String], command: &[String]) -> Result<Vec<String>> {
    sd.read()?.node(node)?;
    let cfg = sd.ssh_config();
    if !cfg.exists() {
        bail!("{}: missing (run `vmlan up` again)", cfg.display());
    }
    let mut a = vec!["ssh".to_string(), "-F".into(), cfg.display().to_string()];
    a.extend(options.iter().cloned());
    a.push(node.to_string());
    a.extend(command.iter().cloned());
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn ssh_goes_through_the_generated_config() {
        let dir = std::env::temp_dir().join(format!("vmlan-ssh-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = "[cluster]\nname = \"s\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                    [[node]]\nname = \"master\"\nkernel = \"k\"\n";
        let c = crate::cluster::parse(Path::new("/c.toml"), text).unwrap();
        let sd = StateDir { root: dir.clone() };
        let st = crate::state::State::of(&c, "/c.toml".into(), vec![vec![]]);
        sd.write(&st).unwrap();
        let opts = ["-v".to_string()];
        let cmd = ["uname".to_string(), "-a".to_string()];
        assert!(ssh_argv(&sd, "master", &opts, &cmd)
            .unwrap_err()
            .to_string()
            .contains("ssh_config"));
        crate::up::write_files(&sd, &st).unwrap();
        let cfg = sd.ssh_config().display().to_string();
        assert_eq!(
            ssh_argv(&sd, "master", &opts, &cmd).unwrap(),
            ["ssh", "-F", &cfg, "-v", "master", "uname", "-a"]
        );
        assert!(ssh_argv(&sd, "nobody", &[], &[])
            .unwrap_err()
            .to_string()
            .contains("no node \"nobody\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
