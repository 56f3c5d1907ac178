// vmlan-loadpeer: benchmark load peer that sends, receives or drains Ethernet frames through one switch
// port (a unix stream socket with QEMU's framing, a vde_switch through libvdeplug, or a network
// interface through an AF_PACKET socket, packet(7)), one syscall per frame.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};

/// EtherType of the test frames: IEEE 802 local experimental EtherType 1.
const ETHERTYPE: u16 = 0x88b5;
/// Marks a test frame's payload (after the EtherType).
const MAGIC: &[u8; 4] = b"VMLB";
/// Control frames: a peer's announcement, the sender's probe, the receiver's answer.
const HELLO: &[u8; 4] = b"HELO";
const PROBE: &[u8; 4] = b"PROB";
const ANSWER: &[u8; 4] = b"ANSW";
/// Ethernet header (14) + magic (4) + sequence number (8).
const MIN_FRAME: usize = 26;
/// Largest frame the load peer sends or accepts on a stream port.
const MAX_FRAME: usize = 65535;
/// libvdeplug's VDE_ETHBUFSIZE (VDE_MAXMTU 9216 + 14 + 4).
const VDE_ETHBUFSIZE: usize = 9216 + 14 + 4;
/// User-space receive buffer of a stream endpoint: many frames per read.
const STREAM_RBUF: usize = 1 << 20;
/// Socket buffer size asked for with SO_SNDBUF / SO_RCVBUF (the kernel caps it
/// at net.core.wmem_max / rmem_max).
const SOCK_BUF: c_int = 4 << 20;
/// How often a blocked receive wakes up to check its deadlines.
const POLL_TICK: Duration = Duration::from_millis(200);
const BROADCAST: [u8; 6] = [0xff; 6];

#[derive(Parser)]
#[command(
    name = "vmlan-loadpeer",
    about = "Benchmark load peer: sends, receives or drains Ethernet frames through one switch port.\n\
             ENDPOINT is stream:PATH (unix stream socket, QEMU's framing: 4-byte big-endian length, then the frame) \
             , vde:DIR (a vde_switch control directory, through libvdeplug) \
             or packet:IFNAME (raw Ethernet frames on a network interface, AF_PACKET; needs CAP_NET_RAW)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Probe the receiver until it answers (so learning switches know both ends),
    /// then send COUNT frames of SIZE bytes, one write/send syscall per frame.
    Send {
        /// Where to send: stream:PATH, vde:DIR or packet:IFNAME.
        #[arg(long, value_name = "ENDPOINT")]
        to: String,
        /// Frame length in bytes, Ethernet header included, no FCS.
        #[arg(long, value_name = "BYTES")]
        size: usize,
        /// Number of frames to send.
        #[arg(long, value_name = "N")]
        count: u64,
        /// Source MAC of the frames.
        #[arg(long, value_name = "MAC")]
        src_mac: String,
        /// Destination MAC of the frames (the receiver's).
        #[arg(long, value_name = "MAC")]
        dst_mac: String,
        /// Stop sending after this many seconds even if COUNT is not reached.
        #[arg(long, value_name = "LIMIT", default_value_t = 60.0)]
        seconds: f64,
        /// Before sending, wait (at most LIMIT seconds) until this file exists
        /// (the receiver's --ready-file, or a start signal for several senders).
        #[arg(long, value_name = "PATH")]
        wait_file: Option<PathBuf>,
        /// Create this file once connected (before waiting for --wait-file), so
        /// that a script can start several senders together once all are connected.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Keep retrying the connection this many seconds (the socket may not exist yet).
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        connect_timeout: f64,
    },
    /// Announce MAC with one broadcast frame, then count test frames addressed to MAC
    /// (answering the sender's probe first) and print one line:
    /// frames= bytes= seconds= fps= gbps= lost= stray= t0= t1=
    ///
    /// seconds runs from the first to the last test frame; gbps counts frame bytes
    /// (no length prefix); lost = highest sequence number seen + 1 - frames;
    /// stray = test frames for another MAC (flooded to this port); t0 and t1 are
    /// the CLOCK_MONOTONIC times (ns) of the reads that brought the first and
    /// the last test frame, so that several receivers' runs can be combined.
    Recv {
        /// Where to receive: stream:PATH, vde:DIR or packet:IFNAME.
        #[arg(long, value_name = "ENDPOINT")]
        from: String,
        /// Stop once this many frames arrived.
        #[arg(long, value_name = "N")]
        count: u64,
        /// This receiver's MAC (the sender's --dst-mac).
        #[arg(long, value_name = "MAC")]
        mac: String,
        /// Give up after this many seconds if COUNT frames did not arrive.
        #[arg(long, value_name = "LIMIT", default_value_t = 60.0)]
        seconds: f64,
        /// Create this file once connected and announced (for the sender's --wait-file).
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Once frames have started, stop if none arrives for this many
        /// milliseconds (the switch dropped some, or the sender stopped early).
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        idle_ms: u64,
        /// Keep retrying the connection this many seconds (the socket may not exist yet).
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        connect_timeout: f64,
    },
    /// Announce MAC with one broadcast frame, then drain and discard until
    /// killed (SIGTERM/SIGINT), end of stream, or LIMIT; prints `idle frames= bytes=`.
    Idle {
        /// Where to connect: stream:PATH, vde:DIR or packet:IFNAME.
        #[arg(long, value_name = "ENDPOINT")]
        from: String,
        /// This peer's MAC.
        #[arg(long, value_name = "MAC")]
        mac: String,
        /// Exit after this many seconds.
        #[arg(long, value_name = "LIMIT", default_value_t = 60.0)]
        seconds: f64,
        /// Create this file once connected and announced.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Keep retrying the connection this many seconds (the socket may not exist yet).
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        connect_timeout: f64,
    },
    /// Run COMMAND (the switch being measured), pass SIGTERM/SIGINT on to it, and
    /// when it ends write `cpu_ns=N` to FILE: its user + system CPU time in
    /// nanoseconds, every thread included (wait4(2)'s rusage). Exits with its status.
    Run {
        /// Where to write `cpu_ns=N`.
        #[arg(long, value_name = "FILE")]
        cpu_file: PathBuf,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Send {
            to,
            size,
            count,
            src_mac,
            dst_mac,
            seconds,
            wait_file,
            ready_file,
            connect_timeout,
        } => cmd_send(
            &to,
            size,
            count,
            &src_mac,
            &dst_mac,
            seconds,
            wait_file.as_deref(),
            ready_file.as_deref(),
            connect_timeout,
        ),
        Cmd::Recv {
            from,
            count,
            mac,
            seconds,
            ready_file,
            idle_ms,
            connect_timeout,
        } => cmd_recv(
            &from,
            count,
            &mac,
            seconds,
            ready_file.as_deref(),
            idle_ms,
            connect_timeout,
        ),
        Cmd::Idle {
            from,
            mac,
            seconds,
            ready_file,
            connect_timeout,
        } => cmd_idle(&from, &mac, seconds, ready_file.as_deref(), connect_timeout),
        Cmd::Run { cpu_file, command } => cmd_run(&cpu_file, &command),
    };
    if let Err(e) = res {
        eprintln!("vmlan-loadpeer: {e:#}");
        std::process::exit(1);
    }
}

/// The measured child's pid, for the signal handler (0: none yet).
static RUN_CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Passes SIGTERM/SIGINT on to the measured child (kill(2) is async-signal-safe).
extern "C" fn pass_signal(sig: c_int) {
    let pid = RUN_CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) with a pid and a signal number; no memory is touched.
        unsafe { libc::kill(pid, sig) };
    }
}

/// `run`: spawns `command`, waits for it with wait4(2) and writes its CPU time.
fn cmd_run(cpu_file: &Path, command: &[String]) -> Result<()> {
    let child = std::process::Command::new(&command[0])
        .args(&command[1..])
        .spawn()
        .with_context(|| format!("cannot run {}", command[0]))?;
    let pid = child.id() as i32;
    RUN_CHILD.store(pid, Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only calls kill(2).
        unsafe { libc::signal(sig, pass_signal as *const () as libc::sighandler_t) };
    }
    let mut status: c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, writing into the two locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    std::fs::write(cpu_file, format!("cpu_ns={}\n", ns(ru.ru_utime) + ns(ru.ru_stime)))
        .with_context(|| format!("write {}", cpu_file.display()))?;
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    });
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("bad MAC {s:?}: expected six hex bytes like 02:00:00:00:00:01");
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {s:?}"))?;
    }
    Ok(mac)
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow!("bad number of seconds {s}"))
}

/// Writes dst, src, EtherType and the magic into the start of `frame`.
fn write_header(frame: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    frame[0..6].copy_from_slice(dst);
    frame[6..12].copy_from_slice(src);
    frame[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    frame[14..18].copy_from_slice(MAGIC);
}

/// Is this one of our test frames, addressed to `mac`? Returns its sequence number.
fn test_frame_seq(frame: &[u8], mac: &[u8; 6]) -> Option<u64> {
    if frame.len() < MIN_FRAME
        || frame[0..6] != mac[..]
        || frame[12..14] != ETHERTYPE.to_be_bytes()
        || frame[14..18] != MAGIC[..]
    {
        return None;
    }
    Some(u64::from_be_bytes(frame[18..26].try_into().unwrap()))
}

/// Is this a control frame of kind `magic` addressed to `mac`? Returns its source.
fn control_from(frame: &[u8], mac: &[u8; 6], magic: &[u8; 4]) -> Option<[u8; 6]> {
    if frame.len() < 18
        || frame[0..6] != mac[..]
        || frame[12..14] != ETHERTYPE.to_be_bytes()
        || frame[14..18] != magic[..]
    {
        return None;
    }
    Some(frame[6..12].try_into().unwrap())
}

// ---------------------------------------------------------------------------
// Endpoints

enum Endpoint {
    Stream(PathBuf),
    Vde(PathBuf),
    Packet(String),
}

impl Endpoint {
    fn parse(s: &str) -> Result<Self> {
        if let Some(p) = s.strip_prefix("stream:") {
            Ok(Endpoint::Stream(p.into()))
        } else if let Some(p) = s.strip_prefix("vde:") {
            Ok(Endpoint::Vde(p.into()))
        } else if let Some(p) = s.strip_prefix("packet:") {
            Ok(Endpoint::Packet(p.into()))
        } else {
            bail!("bad endpoint {s:?}: expected stream:PATH, vde:DIR or packet:IFNAME")
        }
    }
}

enum Conn {
    Stream(UnixStream),
    Vde(VdeConn),
    Packet(PacketConn),
}

impl Conn {
    /// Connects, retrying for `timeout` while the socket is missing or refuses.
    fn connect(ep: &Endpoint, timeout: Duration, descr: &str) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = match ep {
                Endpoint::Stream(p) => UnixStream::connect(p)
                    .map(Conn::Stream)
                    .with_context(|| format!("cannot connect to unix stream socket {}", p.display())),
                Endpoint::Vde(p) => VdeConn::open(p, descr).map(Conn::Vde),
                Endpoint::Packet(ifname) => PacketConn::open(ifname).map(Conn::Packet),
            };
            match attempt {
                Ok(c) => {
                    c.set_buffers();
                    return Ok(c);
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn fd(&self) -> c_int {
        match self {
            Conn::Stream(s) => s.as_raw_fd(),
            Conn::Vde(v) => v.datafd(),
            Conn::Packet(p) => p.fd.as_raw_fd(),
        }
    }

    /// Asks for large socket buffers; the kernel caps them, failure is harmless.
    fn set_buffers(&self) {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: setsockopt on our own fd with a valid c_int option value.
            unsafe {
                libc::setsockopt(
                    self.fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&SOCK_BUF as *const c_int).cast(),
                    std::mem::size_of::<c_int>() as libc::socklen_t,
                );
            }
        }
    }

    /// Makes blocking receives return (WouldBlock/TimedOut) after `d`.
    fn set_recv_timeout(&self, d: Duration) -> Result<()> {
        let tv = libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: setsockopt on our own fd with a valid timeval.
        let rc = unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("setsockopt(SO_RCVTIMEO)");
        }
        Ok(())
    }

    /// Sends one frame with one syscall. `wire` holds the 4-byte length prefix
    /// followed by the frame; a vde port sends only the frame.
    fn send_wire(&mut self, wire: &[u8]) -> Result<()> {
        match self {
            // A blocking unix stream write sends everything at once unless a signal
            // interrupts it; write_all only loops in that rare case.
            Conn::Stream(s) => s.write_all(wire).context("write to stream port"),
            Conn::Vde(v) => v.send(&wire[4..]),
            Conn::Packet(p) => p.send(&wire[4..]),
        }
    }

    /// Sends one frame (for the announcement), framing it for stream ports.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        let mut wire = Vec::with_capacity(frame.len() + 4);
        wire.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        wire.extend_from_slice(frame);
        self.send_wire(&wire)
    }

    /// Sends one 64-byte control frame (`magic`: HELLO, PROBE or ANSWER).
    fn send_control(&mut self, dst: &[u8; 6], src: &[u8; 6], magic: &[u8; 4]) -> Result<()> {
        let mut frame = [0u8; 64];
        frame[0..6].copy_from_slice(dst);
        frame[6..12].copy_from_slice(src);
        frame[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        frame[14..18].copy_from_slice(magic);
        self.send_frame(&frame).context("send a control frame")
    }

    /// Waits (at most `limit`) until the peer has taken every byte this socket
    /// sent (SIOCOUTQ reaches 0): vde_switch discards what is still queued on a
    /// port's data socket when the port's control connection closes.
    fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let mut queued: c_int = 0;
            // SAFETY: SIOCOUTQ writes one int.
            let rc = unsafe { libc::ioctl(self.fd(), libc::TIOCOUTQ, &mut queued) };
            if rc != 0 || queued <= 0 || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Receives from a connection: stream bytes are reassembled into frames
/// (length prefix, partial reads), vde delivers one frame per vde_recv.
struct Receiver {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

enum Recvd {
    /// Some bytes or a frame arrived (frames were handed to the callback).
    Data,
    /// Nothing arrived before the receive timeout.
    Timeout,
    /// The peer closed the connection.
    Eof,
}

impl Receiver {
    fn new(conn: &Conn) -> Self {
        let size = match conn {
            Conn::Stream(_) => STREAM_RBUF,
            Conn::Vde(_) | Conn::Packet(_) => VDE_ETHBUFSIZE,
        };
        Receiver {
            buf: vec![0u8; size],
            start: 0,
            end: 0,
        }
    }

    /// One receive syscall; calls `on_frame` for every complete frame it yields.
    fn recv(&mut self, conn: &mut Conn, mut on_frame: impl FnMut(&[u8])) -> Result<Recvd> {
        match conn {
            // A datagram port has no end of stream: a switch that went away shows as silence.
            Conn::Vde(v) => match v.recv(&mut self.buf) {
                Ok(n) => {
                    on_frame(&self.buf[..n]);
                    Ok(Recvd::Data)
                }
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => Ok(Recvd::Timeout),
                Err(e) => Err(e).context("vde_recv"),
            },
            Conn::Packet(p) => match p.recv(&mut self.buf) {
                Ok(n) => {
                    on_frame(&self.buf[..n]);
                    Ok(Recvd::Data)
                }
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => Ok(Recvd::Timeout),
                Err(e) => Err(e).context("recv from packet socket"),
            },
            Conn::Stream(s) => {
                let n = match s.read(&mut self.buf[self.end..]) {
                    Ok(0) => return Ok(Recvd::Eof),
                    Ok(n) => n,
                    Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => return Ok(Recvd::Timeout),
                    Err(e) => return Err(e).context("read from stream port"),
                };
                self.end += n;
                while self.end - self.start >= 4 {
                    let len = u32::from_be_bytes(self.buf[self.start..self.start + 4].try_into().unwrap()) as usize;
                    if len > MAX_FRAME {
                        bail!("bad stream framing: frame length {len} > {MAX_FRAME}");
                    }
                    if self.end - self.start < 4 + len {
                        break;
                    }
                    on_frame(&self.buf[self.start + 4..self.start + 4 + len]);
                    self.start += 4 + len;
                }
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                } else if self.buf.len() - self.end < 4 + MAX_FRAME {
                    // Move the partial frame to the front so the next read has room.
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                Ok(Recvd::Data)
            }
        }
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: one clock for every process of a run.
fn mono_ns() -> u64 {
    // SAFETY: clock_gettime writes one timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn touch(path: Option<&Path>) -> Result<()> {
    if let Some(p) = path {
        std::fs::write(p, b"ready\n").with_context(|| format!("create ready file {}", p.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Subcommands

#[allow(clippy::too_many_arguments)]
fn cmd_send(
    to: &str,
    size: usize,
    count: u64,
    src_mac: &str,
    dst_mac: &str,
    seconds: f64,
    wait_file: Option<&Path>,
    ready_file: Option<&Path>,
    connect_timeout: f64,
) -> Result<()> {
    let ep = Endpoint::parse(to)?;
    let max = match ep {
        Endpoint::Stream(_) => MAX_FRAME,
        Endpoint::Vde(_) | Endpoint::Packet(_) => VDE_ETHBUFSIZE,
    };
    if !(MIN_FRAME..=max).contains(&size) {
        bail!("--size {size} out of range {MIN_FRAME}..={max}");
    }
    let src = parse_mac(src_mac)?;
    let dst = parse_mac(dst_mac)?;
    let limit = secs(seconds)?;

    let mut conn = Conn::connect(&ep, secs(connect_timeout)?, "vmlan-loadpeer send")?;
    touch(ready_file)?;

    if let Some(p) = wait_file {
        let deadline = Instant::now() + limit;
        while !p.exists() {
            if Instant::now() >= deadline {
                bail!("receiver not ready: {} did not appear within {seconds} s", p.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    handshake(&mut conn, &src, &dst)?;

    // The wire buffer: 4-byte length prefix (used by stream ports), then the frame.
    let mut wire = vec![0u8; 4 + size];
    wire[0..4].copy_from_slice(&(size as u32).to_be_bytes());
    write_header(&mut wire[4..], &dst, &src);

    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        if sent.is_multiple_of(1024) && start.elapsed() >= limit {
            break;
        }
        wire[4 + 18..4 + 26].copy_from_slice(&sent.to_be_bytes());
        conn.send_wire(&wire)?;
        sent += 1;
    }
    let el = start.elapsed().as_secs_f64();
    conn.drain(Duration::from_secs(10));
    eprintln!(
        "send: sent={sent} size={size} seconds={el:.6} fps={:.0} gbps={:.4}",
        sent as f64 / el,
        (sent * size as u64) as f64 * 8.0 / el / 1e9
    );
    Ok(())
}

/// Before the timed run: sends a probe to the receiver until it answers (at most
/// 5 s), so that a learning switch knows where both ends are. vde_switch forgets
/// every learned MAC when a port connects, and the sender connects last. What
/// else arrives (the receiver's or idle peers' announcements) is dropped; after
/// the handshake the sender never reads again.
fn handshake(conn: &mut Conn, src: &[u8; 6], dst: &[u8; 6]) -> Result<()> {
    conn.set_recv_timeout(POLL_TICK)?;
    let mut rx = Receiver::new(conn);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answered = false;
    while !answered {
        if Instant::now() >= deadline {
            eprintln!("send: the receiver did not answer the probe; a learning switch may flood");
            return Ok(());
        }
        conn.send_control(dst, src, PROBE)?;
        let sent = Instant::now();
        while !answered && sent.elapsed() < POLL_TICK {
            let r = rx.recv(conn, |f| {
                if control_from(f, src, ANSWER) == Some(*dst) {
                    answered = true;
                }
            })?;
            if let Recvd::Eof = r {
                bail!("the switch closed the connection during the handshake");
            }
        }
    }
    Ok(())
}

fn cmd_recv(
    from: &str,
    count: u64,
    mac: &str,
    seconds: f64,
    ready_file: Option<&Path>,
    idle_ms: u64,
    connect_timeout: f64,
) -> Result<()> {
    let ep = Endpoint::parse(from)?;
    let mac = parse_mac(mac)?;
    let limit = secs(seconds)?;
    let idle = Duration::from_millis(idle_ms);

    let mut conn = Conn::connect(&ep, secs(connect_timeout)?, "vmlan-loadpeer recv")?;
    conn.set_recv_timeout(POLL_TICK)?;
    conn.send_control(&BROADCAST, &mac, HELLO)?;
    let mut rx = Receiver::new(&conn);
    touch(ready_file)?;

    let begin = Instant::now();
    // The source of a probe to answer (see handshake()).
    let mut probe_from: Option<[u8; 6]> = None;
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut max_seq: Option<u64> = None;
    let mut first: Option<Instant> = None;
    let mut last = begin;
    let (mut t0, mut t1, mut stray) = (0u64, 0u64, 0u64);
    let mut why = "count reached";
    while frames < count {
        let before = frames;
        let r = rx.recv(&mut conn, |f| {
            if let Some(seq) = test_frame_seq(f, &mac) {
                frames += 1;
                bytes += f.len() as u64;
                max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
            } else if f.len() >= MIN_FRAME && f[12..14] == ETHERTYPE.to_be_bytes() && f[14..18] == MAGIC[..] {
                stray += 1;
            } else if let Some(src) = control_from(f, &mac, PROBE) {
                probe_from = Some(src);
            }
        })?;
        let now = Instant::now();
        if frames > before {
            t1 = mono_ns();
            if first.is_none() {
                t0 = t1;
            }
            first.get_or_insert(now);
            last = now;
        }
        if let Some(src) = probe_from.take() {
            conn.send_control(&src, &mac, ANSWER)?;
        }
        if let Recvd::Eof = r {
            why = "peer closed the connection";
            break;
        }
        if first.is_some() && now - last >= idle {
            why = "idle timeout";
            break;
        }
        if first.is_none() && now - begin >= limit || now - begin >= limit + idle {
            why = "time limit";
            break;
        }
    }
    let el = first.map_or(0.0, |f| (last - f).as_secs_f64());
    let (fps, gbps) = if el > 0.0 {
        (frames as f64 / el, bytes as f64 * 8.0 / el / 1e9)
    } else {
        (0.0, 0.0)
    };
    let lost = max_seq.map_or(0, |m| (m + 1).saturating_sub(frames));
    println!(
        "frames={frames} bytes={bytes} seconds={el:.6} fps={fps:.0} gbps={gbps:.4} lost={lost} stray={stray} t0={t0} t1={t1}"
    );
    if frames < count {
        eprintln!("recv: stopped early ({why}): {frames} of {count} frames");
    }
    if frames == 0 {
        bail!("no test frame arrived");
    }
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn cmd_idle(from: &str, mac: &str, seconds: f64, ready_file: Option<&Path>, connect_timeout: f64) -> Result<()> {
    let ep = Endpoint::parse(from)?;
    let mac = parse_mac(mac)?;
    let limit = secs(seconds)?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let h = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, h);
        libc::signal(libc::SIGINT, h);
    }

    let mut conn = Conn::connect(&ep, secs(connect_timeout)?, "vmlan-loadpeer idle")?;
    conn.set_recv_timeout(POLL_TICK)?;
    conn.send_control(&BROADCAST, &mac, HELLO)?;
    let mut rx = Receiver::new(&conn);
    touch(ready_file)?;

    let begin = Instant::now();
    let (mut frames, mut bytes) = (0u64, 0u64);
    while !STOP.load(Ordering::Relaxed) && begin.elapsed() < limit {
        let r = rx.recv(&mut conn, |f| {
            frames += 1;
            bytes += f.len() as u64;
        })?;
        if let Recvd::Eof = r {
            break;
        }
    }
    println!("idle frames={frames} bytes={bytes}");
    Ok(())
}

// ---------------------------------------------------------------------------
// libvdeplug, loaded at run time with dlopen so that building the workspace
// does not need libvdeplug-dev: only the vde: endpoint needs the library.
// API (libvdeplug.h of vdeplug4, LIBVDEPLUG_INTERFACE_VERSION 1):
//   VDECONN *vde_open_real(char *vde_url, char *descr, int interface_version, struct vde_open_args *);
//   ssize_t vde_send(VDECONN *, const void *buf, size_t len, int flags);
//   ssize_t vde_recv(VDECONN *, void *buf, size_t len, int flags);
//   int vde_datafd(VDECONN *); int vde_close(VDECONN *);
// `vde_open` is a macro for vde_open_real(url, descr, 1, args).

const LIBVDEPLUG_INTERFACE_VERSION: c_int = 1;

#[repr(C)]
struct VdeOpenArgs {
    port: c_int,
    group: *mut c_char,
    mode: libc::mode_t,
}

type OpenFn = unsafe extern "C" fn(*mut c_char, *mut c_char, c_int, *mut VdeOpenArgs) -> *mut c_void;
type SendFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> isize;
type RecvFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, c_int) -> isize;
type FdFn = unsafe extern "C" fn(*mut c_void) -> c_int;

struct VdeLib {
    open_real: OpenFn,
    send: SendFn,
    recv: RecvFn,
    datafd: FdFn,
    close: FdFn,
}

impl VdeLib {
    fn load() -> Result<Self> {
        let mut handle = std::ptr::null_mut();
        for name in [c"libvdeplug.so.2", c"libvdeplug.so"] {
            // SAFETY: dlopen with a valid NUL-terminated name.
            handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
            if !handle.is_null() {
                break;
            }
        }
        if handle.is_null() {
            bail!("cannot load libvdeplug.so.2 (apt-get install libvdeplug2 or libvdeplug-dev)");
        }
        let sym = |name: &CStr| -> Result<*mut c_void> {
            // SAFETY: dlsym on a live handle with a valid name.
            let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
            if p.is_null() {
                bail!("libvdeplug has no symbol {name:?}");
            }
            Ok(p)
        };
        // SAFETY: the symbols have the C signatures declared in libvdeplug.h.
        unsafe {
            Ok(VdeLib {
                open_real: std::mem::transmute::<*mut c_void, OpenFn>(sym(c"vde_open_real")?),
                send: std::mem::transmute::<*mut c_void, SendFn>(sym(c"vde_send")?),
                recv: std::mem::transmute::<*mut c_void, RecvFn>(sym(c"vde_recv")?),
                datafd: std::mem::transmute::<*mut c_void, FdFn>(sym(c"vde_datafd")?),
                close: std::mem::transmute::<*mut c_void, FdFn>(sym(c"vde_close")?),
            })
        }
    }
}

struct VdeConn {
    lib: VdeLib,
    conn: *mut c_void,
}

impl VdeConn {
    fn open(dir: &Path, descr: &str) -> Result<Self> {
        let lib = VdeLib::load()?;
        // vdeplug4 picks the plugin from the URL scheme; vde:// is the classic
        // vde_switch control-directory protocol that vde2's vde_switch speaks.
        let url = CString::new(format!("vde://{}", dir.display())).context("vde path contains NUL")?;
        let descr = CString::new(descr).context("description contains NUL")?;
        let mut args = VdeOpenArgs {
            port: 0,
            group: std::ptr::null_mut(),
            mode: 0,
        };
        // SAFETY: valid NUL-terminated strings and args struct; vdeplug copies what it keeps.
        let conn = unsafe {
            (lib.open_real)(
                url.as_ptr() as *mut c_char,
                descr.as_ptr() as *mut c_char,
                LIBVDEPLUG_INTERFACE_VERSION,
                &mut args,
            )
        };
        if conn.is_null() {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot connect to vde_switch at {} (vde_open)", dir.display()));
        }
        Ok(VdeConn { lib, conn })
    }

    fn datafd(&self) -> c_int {
        // SAFETY: conn is a live VDECONN.
        unsafe { (self.lib.datafd)(self.conn) }
    }

    /// One vde_send per frame; retries only if the kernel had no buffer (ENOBUFS/EAGAIN) or a signal hit.
    fn send(&mut self, frame: &[u8]) -> Result<()> {
        loop {
            // SAFETY: conn is live, frame is a valid buffer of frame.len() bytes.
            let n = unsafe { (self.lib.send)(self.conn, frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOBUFS) => continue,
                _ => return Err(e).context("vde_send"),
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: conn is live, buf is writable for buf.len() bytes.
        let n = unsafe { (self.lib.recv)(self.conn, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for VdeConn {
    fn drop(&mut self) {
        // SAFETY: conn is live and closed exactly once.
        unsafe { (self.lib.close)(self.conn) };
    }
}

// ---------------------------------------------------------------------------
// AF_PACKET (packet(7)): whole Ethernet frames on one interface, for the kernel's
// own switching paths (a Linux bridge, vxlan) in bench/vxlan.sh.

/// PACKET_IGNORE_OUTGOING (linux/if_packet.h, Linux 4.20): do not loop this
/// socket's own (and the host's other) outgoing frames back to it.
const PACKET_IGNORE_OUTGOING: c_int = 23;

struct PacketConn {
    fd: std::os::fd::OwnedFd,
}

impl PacketConn {
    /// A SOCK_RAW packet socket bound to `ifname` for every EtherType, ignoring
    /// outgoing frames (the sender would otherwise get a copy of each frame it sends).
    fn open(ifname: &str) -> Result<Self> {
        use std::os::fd::FromRawFd;
        let name = CString::new(ifname).context("interface name contains NUL")?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("no interface {ifname:?}"));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be() as c_int;
        // SAFETY: socket(2) with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET) (needs CAP_NET_RAW)");
        }
        // SAFETY: raw is a new socket we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let one: c_int = 1;
        // SAFETY: setsockopt with a valid c_int; failure (an old kernel) only costs speed.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                (&one as *const c_int).cast(),
                std::mem::size_of::<c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = index as c_int;
        // SAFETY: binds our socket to a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("bind packet socket to {ifname}"));
        }
        Ok(PacketConn { fd })
    }

    /// One send(2) per frame; retries only when the kernel had no buffer or a signal hit.
    fn send(&mut self, frame: &[u8]) -> Result<()> {
        loop {
            // SAFETY: our bound socket and a valid buffer of frame.len() bytes.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOBUFS) => continue,
                _ => return Err(e).context("send on packet socket"),
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: our socket and a writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}
