//! The `vmlan` command: the CLI and the drivers. `vmlan hub` runs the switch
//! and its host (hub_cmd.rs), with the drivers that give the sans-IO host its
//! time, sockets and files: host_driver.rs (the host and its lease store) and
//! dns_io.rs (DNS listeners and upstream sockets). The protocol logic lives in
//! the `vmlan-hub` and `vmlan-host` crates, the lease files in `vmlan-store`; `up`, `status`, `ssh`, `console`, `logs` and `down`
//! drive the `vmlan-launcher` crate (see cluster_cmd.rs).

mod api;
mod cluster_cmd;
mod conf_file;
mod ctl_cmd;
mod dhcp_script;
mod dns_io;
mod dnsops;
mod forward_io;
mod host_driver;
mod hub_cmd;
mod leases_cmd;
mod notify;

use clap::{Parser, Subcommand};

/// vmlan: one unprivileged binary for clusters of QEMU VMs on one machine:
/// a userspace L2 switch for QEMU's own netdevs, with its own ARP, ICMP, DHCP
/// and DNS host on the segment.
#[derive(Parser, Debug)]
#[command(name = "vmlan", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a hub: a switched segment for QEMU guests, with DHCP and DNS.
    Hub(Box<hub_cmd::HubArgs>),
    /// Print the current leases of a hub (its lease file and journal), as a table or JSON.
    Leases(leases_cmd::LeasesArgs),
    /// Start a whole cluster from one TOML file: overlays, a hub per network, the
    /// nodes (SLIRP ssh port plus segment NIC); returns when every node holds its lease.
    Up(cluster_cmd::UpArgs),
    /// Show each node (running or stopped, pid, MAC, leased IP, ssh port) and each hub.
    Status(cluster_cmd::StatusArgs),
    /// Run ssh to a node (127.0.0.1, its forwarded port), passing options through.
    Ssh(cluster_cmd::SshArgs),
    /// Attach to a node's serial console; detach with Ctrl-].
    Console(cluster_cmd::NodeArgs),
    /// Print a node's console log (-F: follow it).
    Logs(cluster_cmd::NodeArgs),
    /// Talk to a running hub's API (--api): leases, ports, events, reservations, records; a table or --json.
    Ctl(ctl_cmd::CtlArgs),
    /// Stop the nodes (ACPI power button through QMP, then kill) and the hubs; --purge removes the state too.
    Down(cluster_cmd::DownArgs),
}

/// For the commands that only print: end quietly when the reader goes away
/// (`vmlan status | head`), as Unix tools do, instead of failing on EPIPE.
/// The hub and the launcher keep Rust's default (SIGPIPE ignored, EPIPE
/// returned): they write to sockets and pipes whose peers may vanish.
fn die_on_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs the default action before any other thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Leases(_) | Command::Status(_) | Command::Logs(_) | Command::Ctl(_)
    ) {
        die_on_sigpipe();
    }
    let result = match cli.command {
        Command::Hub(args) => hub_cmd::run(*args),
        Command::Leases(args) => leases_cmd::run(args),
        Command::Up(args) => cluster_cmd::run_up(args),
        Command::Status(args) => cluster_cmd::run_status(args),
        Command::Ssh(args) => cluster_cmd::run_ssh(args),
        Command::Console(args) => cluster_cmd::run_console(args),
        Command::Logs(args) => cluster_cmd::run_logs(args),
        Command::Down(args) => cluster_cmd::run_down(args),
        Command::Ctl(args) => ctl_cmd::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmlan: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
