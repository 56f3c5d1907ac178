//! `vmlan hub --stream unix:PATH` out of file descriptors: the hub runs with
//! RLIMIT_NOFILE lowered to 64, a flood of connections makes `accept(2)` fail
//! with EMFILE, and the hub must keep serving: the two clients that connected
//! first still exchange frames, and once the flood's connections close the
//! listener accepts a new client (the accept loop backs off and goes on, as in
//! tokio's mini-redis, instead of ending). Only a unix socket in a scratch
//! directory is used, so no network namespace is needed; `--no-resolv` keeps
//! the hub from opening upstream DNS sockets.
//!
//! The DNS TCP listener likewise: flooded with connections inside a network
//! namespace of the test's own (127.0.0.1 there), the hub out of descriptors
//! must back off between failed accepts instead of spinning on them, which
//! shows as CPU time.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

/// File descriptors the hub may hold.
const NOFILE: u64 = 64;
/// Connections the flood attempts, at most.
const FLOOD: usize = 2_000;

struct Hub(Child);
impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn frame(src: u8, tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 64];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// A non-blocking connect: the socket, or the errno (EAGAIN when the backlog is full).
fn try_connect(path: &Path) -> Result<OwnedFd, Errno> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// A blocking client with a read timeout, retrying while the backlog is full (10 s at most).
fn client(path: &Path, timeout: Duration) -> UnixStream {
    let start = Instant::now();
    loop {
        match try_connect(path) {
            Ok(fd) => {
                let s = UnixStream::from(fd);
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(timeout)).unwrap();
                return s;
            }
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "cannot connect: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sends broadcasts from `from` until `to` receives one tagged `tag` (bounded: `limit`).
fn delivered(from: &mut UnixStream, to: &mut UnixStream, src: u8, tag: u8, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        common::send_framed(from, &frame(src, tag));
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            match common::recv_framed(to) {
                Some(f) if f == frame(src, tag) => return true,
                Some(_) => {}
                None => break,
            }
        }
    }
    false
}

/// Makes `cmd`'s process (and what it execs) start with at most [`NOFILE`] open files.
fn limit_open_files(cmd: &mut Command) {
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let lim = nix::libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn hub_keeps_accepting_after_running_out_of_descriptors() {
    let dir = common::scratch("hub_accept_errors");
    let path = dir.join("hub.sock");
    let log = dir.join("hub.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmlan"));
    cmd.args(["hub", "--stream", &format!("unix:{}", path.display())])
        .args(["--addr", "10.0.3.1/24", "--no-resolv"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    limit_open_files(&mut cmd);
    let _hub = Hub(cmd.spawn().unwrap());
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "the hub did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }

    let t = Duration::from_millis(300);
    let (mut a, mut b) = (client(&path, t), client(&path, t));
    assert!(
        delivered(&mut a, &mut b, 0xa, 1, Duration::from_secs(5)),
        "A -> B before the flood"
    );

    // The flood: until the hub is out of descriptors and its backlog is full.
    let mut flood = Vec::new();
    let mut refused = 0;
    let start = Instant::now();
    for _ in 0..FLOOD {
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        match try_connect(&path) {
            Ok(fd) => flood.push(fd),
            Err(_) => refused += 1,
        }
    }
    let out_of_fds = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Too many open files")
    };
    let start = Instant::now();
    while !out_of_fds() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "accept never failed ({} connected, {refused} refused)",
            flood.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The first clients keep working while the hub is out of descriptors.
    assert!(
        delivered(&mut a, &mut b, 0xa, 2, Duration::from_secs(5)),
        "A -> B during the flood"
    );
    assert!(
        delivered(&mut b, &mut a, 0xb, 3, Duration::from_secs(5)),
        "B -> A during the flood"
    );

    // Descriptors free up: a new client is accepted and switched.
    drop(flood);
    let mut c = client(&path, t);
    assert!(
        delivered(&mut a, &mut c, 0xa, 4, Duration::from_secs(10)),
        "a client connecting after the flood is never served; hub log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(delivered(&mut c, &mut b, 0xc, 5, Duration::from_secs(5)), "C -> B");
}

#[test]
fn dns_tcp_accept_backs_off_when_out_of_descriptors() {
    let dir = common::scratch("hub_dns_accept_errors");
    let mut ns = common::Netns::new("dnsaccept");
    let sock = dir.join("hub.sock");
    let log = dir.join("hub.log");
    let mut cmd = common::stream_hub_cmd(&ns, &sock, &["--dns-listen", "127.0.0.1:5353"]);
    // `ip netns exec` passes the limit on to the hub.
    limit_open_files(&mut cmd);
    let i = common::start_hub_cmd(&mut ns, cmd, &log);
    let pid = ns.child(i).id();

    // The flood, from a thread inside the namespace (its sockets stay there).
    let netns = format!("/var/run/netns/{}", ns.name);
    let flood = std::thread::spawn(move || {
        let f = std::fs::File::open(netns).unwrap();
        // SAFETY: a namespace file descriptor; only this thread changes namespace.
        let rc = unsafe { nix::libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), nix::libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let to: std::net::SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let to = nix::sys::socket::SockaddrIn::from(match to {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        });
        let mut conns = Vec::new();
        let start = Instant::now();
        for _ in 0..FLOOD {
            if start.elapsed() > Duration::from_secs(10) {
                break;
            }
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &to) {
                Ok(()) | Err(Errno::EINPROGRESS) => conns.push(fd),
                Err(e) => panic!("connect: {e}"),
            }
        }
        conns
    });
    let conns = flood.join().unwrap();
    assert!(conns.len() > 2 * NOFILE as usize, "only {} connections", conns.len());
    // The hub has taken what it can; now it is out of descriptors.
    std::thread::sleep(Duration::from_millis(500));
    let before = common::cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = common::cpu_time(pid) - before;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        used < Duration::from_millis(500),
        "the hub spins on failed accepts: {used:?} of CPU in 2 s; log:\n{text}"
    );
    assert!(
        text.contains("Too many open files"),
        "accept never failed; log:\n{text}"
    );
    drop(conns);
}
