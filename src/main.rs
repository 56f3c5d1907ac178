//! The `vmlan` command: CLI wiring only. `vmlan hub` runs the switch and its
//! host (see hub_cmd.rs); the protocol logic lives in the `vmlan-hub` and
//! `vmlan-dhcpdns` crates.

mod dns_io;
mod hub_cmd;
mod leases_cmd;

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
    let result = match cli.command {
        Command::Hub(args) => hub_cmd::run(*args),
        Command::Leases(args) => leases_cmd::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmlan: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
