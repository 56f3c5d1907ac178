//! `vmlan up`, `status`, `ssh`, `console`, `logs`, `down`: CLI wiring only; the
//! work is in the `vmlan-launcher` crate.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use vmlan_launcher::state::{self, StateDir};
use vmlan_launcher::{console, down, status, up};

/// Flags of `vmlan up`.
#[derive(Args, Debug)]
#[command(after_help = "Example: vmlan up examples/yomi.toml   (the file format: README, \
                        \"Configuration reference: cluster file\")")]
pub struct UpArgs {
    /// The cluster file (TOML). Example: vmlan up examples/yomi.toml
    file: PathBuf,
    /// Seconds to wait for every node to be ready (its leases, then an SSH banner
    /// on its ssh port) before giving up (nodes keep running). Example: --timeout 900
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// Return once every node holds its leases, without waiting for sshd (for
    /// images without sshd). Example: vmlan up --no-wait-ssh lab.toml
    #[arg(long)]
    no_wait_ssh: bool,
    /// Only check the file and print the hub, qemu-img and QEMU command lines `up`
    /// would run; start nothing and create nothing (image and kernel files are not
    /// looked at). Example: vmlan up --check examples/yomi.toml
    #[arg(long)]
    check: bool,
    /// For a file with [[host]] tables (a cluster on several machines): which
    /// machine this is; only its nodes and hubs start (default: the [[host]]
    /// named like this machine's hostname). Example: vmlan up two-machines.toml --host a
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
}

/// Which cluster a command acts on.
#[derive(Args, Debug)]
pub struct Which {
    /// The cluster file (its state directory is used). Example: -f examples/yomi.toml
    #[arg(short, long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    /// The cluster's name under ./.vmlan/ (not needed when there is only one). Example: --cluster yomi
    #[arg(long, value_name = "NAME", global = true)]
    cluster: Option<String>,
}

impl Which {
    fn dir(&self) -> Result<StateDir> {
        let cwd = std::env::current_dir()?;
        state::locate(self.file.as_deref(), self.cluster.as_deref(), &cwd)
    }
}

/// Flags of `vmlan status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    which: Which,
    /// Print JSON: {cluster, state_dir, hubs: [{network, state, pid, address, [address6,] leasefile, vxlan, authority}],
    /// nodes: [{name, state, pid, mac, ip, [ipv6,] ssh_port, ssh, nics: [{network, mac, ip, reserved_ip,
    /// [ipv6, ipv6_lease]}]}]} (the bracketed keys only on dual-stack networks)
    #[arg(long)]
    json: bool,
}

/// Flags of `vmlan ssh`.
#[derive(Args, Debug)]
pub struct SshArgs {
    #[command(flatten)]
    which: Which,
    /// The node. Example: vmlan ssh master -- uname -a
    node: String,
    /// ssh options, then the command to run (`--` between them is optional, as
    /// with ssh). Example: vmlan ssh master -v uptime
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "SSH-OPTIONS [--] [COMMAND]"
    )]
    rest: Vec<String>,
}

/// Flags of `vmlan console` and `vmlan logs`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    which: Which,
    /// The node. Example: master
    node: String,
    /// (logs) keep printing what the console writes, until interrupted
    #[arg(long, short = 'F')]
    follow: bool,
}

/// Flags of `vmlan down`.
#[derive(Args, Debug)]
pub struct DownArgs {
    #[command(flatten)]
    which: Which,
    /// Also remove the state directory: overlays, seeds, logs, leases.
    #[arg(long)]
    purge: bool,
    /// Seconds nodes get to power off after the ACPI power button before they are killed. Example: --timeout 60
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
}

/// `vmlan up FILE`: prints the nodes' table when every node holds its lease.
pub fn run_up(a: UpArgs) -> Result<()> {
    if a.check {
        let exe = std::env::current_exe().context("the path of the vmlan binary")?;
        let mut out = std::io::stdout().lock();
        for argv in up::plan(&a.file, &exe, &std::env::current_dir()?, a.host.as_deref())? {
            let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
            writeln!(out, "{}", words.join(" "))?;
        }
        return Ok(());
    }
    let o = up::UpOptions {
        exe: std::env::current_exe().context("the path of the vmlan binary")?,
        cwd: std::env::current_dir()?,
        timeout: Duration::from_secs(a.timeout),
        wait_ssh: !a.no_wait_ssh,
        host: a.host.clone(),
    };
    let s = up::up(&a.file, &o)?;
    // An IPV6 column after IP when some node is on a dual-stack network.
    let v6 = s.nodes.iter().any(|n| n.ipv6.is_some());
    let col6 = |x: &str| if v6 { format!("{x:<39} ") } else { String::new() };
    println!("{:<16} {:<17} {:<15} {}SSH", "NODE", "MAC", "IP", col6("IPV6"));
    for n in &s.nodes {
        println!(
            "{:<16} {:<17} {:<15} {}{}",
            n.name,
            n.mac,
            n.ip.as_deref().unwrap_or("-"),
            col6(n.ipv6.as_deref().unwrap_or("-")),
            n.ssh
        );
    }
    print!("{}", status::next_steps(&s));
    Ok(())
}

/// `w` as one shell word: as is when it is plain, else in single quotes.
fn shell_quote(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// `vmlan status [--json]`.
pub fn run_status(a: StatusArgs) -> Result<()> {
    let s = status::status(&a.which.dir()?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status::table(&s));
    }
    Ok(())
}

/// `vmlan ssh NODE [OPTIONS] [--] [COMMAND...]`: replaces itself with ssh.
pub fn run_ssh(a: SshArgs) -> Result<()> {
    // clap drops a `--` that directly follows NODE; one more `--` on the command
    // line than in `rest` means it did, and everything after NODE is the command.
    let raw = std::env::args_os().filter(|x| x == "--").count();
    let kept = a.rest.iter().filter(|x| *x == "--").count();
    let (opts, cmd) = console::split_ssh_args(&a.rest, raw > kept);
    let argv = console::ssh_argv(&a.which.dir()?, &a.node, &opts, &cmd)?;
    let e = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(e).context("cannot run ssh (install openssh-client)")
}

/// `vmlan console NODE`.
pub fn run_console(a: NodeArgs) -> Result<()> {
    console::console(&a.which.dir()?, &a.node)
}

/// `vmlan logs NODE [-F]`.
pub fn run_logs(a: NodeArgs) -> Result<()> {
    console::logs(&a.which.dir()?, &a.node, a.follow)
}

/// `vmlan down [--purge]`.
pub fn run_down(a: DownArgs) -> Result<()> {
    let dir = a.which.dir()?;
    for line in down::down(&dir, a.purge, Duration::from_secs(a.timeout))? {
        eprintln!("{line}");
    }
    Ok(())
}
