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

/// ssh(1) options that take an argument (`-p 22`, `-o Key=value`, ...).
const SSH_OPTS_WITH_ARG: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Splits what follows `vmlan ssh NODE` into ssh options and the remote command,
/// as ssh(1) reads `ssh [OPTIONS] HOST [COMMAND...]`: options are the words up
/// to the first one that is not an option (or the argument of one, like `22` in
/// `-p 22`) or up to `--`; the rest is the command. With `all_command` (the
/// caller saw `--` right after NODE) every word is the command, so
/// `vmlan ssh master -- -x` runs `-x`. Examples: `master hostname`,
/// `master -- hostname`, `master -o BatchMode=yes -- hostname` and
/// `master -v uptime` all run the command given.
pub fn split_ssh_args(rest: &[String], all_command: bool) -> (Vec<String>, Vec<String>) {
    if all_command {
        return (vec![], rest.to_vec());
    }
    let mut opts = vec![];
    let mut i = 0;
    while i < rest.len() {
        let w = &rest[i];
        if w == "--" {
            return (opts, rest[i + 1..].to_vec());
        }
        if !w.starts_with('-') || w == "-" {
            break;
        }
        opts.push(w.clone());
        // `-p 22`: the flag's letter takes an argument, given as the next word.
        let last = w.chars().last().unwrap_or('-');
        if !w.starts_with("--")
            && w.len() >= 2
            && SSH_OPTS_WITH_ARG.contains(last)
            && w[1..].chars().all(|c| c.is_ascii_alphanumeric())
        {
            let letters = &w[1..];
            // Only when the letter is the last of the word (`-vp 22`, not `-p22`).
            if letters.chars().position(|c| SSH_OPTS_WITH_ARG.contains(c)) == Some(letters.len() - 1) {
                if let Some(v) = rest.get(i + 1) {
                    opts.push(v.clone());
                    i += 1;
                }
            }
        }
        i += 1;
    }
    (opts, rest[i..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn ssh_words_split_like_ssh_reads_them() {
        let v = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let split = |s: &str, all| split_ssh_args(&v(s), all);
        assert_eq!(split("hostname", false), (v(""), v("hostname")));
        assert_eq!(
            split("-o BatchMode=yes -- hostname", false),
            (v("-o BatchMode=yes"), v("hostname"))
        );
        assert_eq!(
            split("-o BatchMode=yes hostname -f", false),
            (v("-o BatchMode=yes"), v("hostname -f"))
        );
        assert_eq!(split("-v uptime", false), (v("-v"), v("uptime")));
        assert_eq!(split("-vp 22 ls -l", false), (v("-vp 22"), v("ls -l")));
        assert_eq!(split("-p22 ls", false), (v("-p22"), v("ls")));
        assert_eq!(split("-t", false), (v("-t"), v("")));
        assert_eq!(split("-x", true), (v(""), v("-x")));
        assert_eq!(split("ls -- -l", false), (v(""), v("ls -- -l")));
    }

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
