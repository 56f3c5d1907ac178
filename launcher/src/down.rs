//! `vmlan down [--purge]`: stops every node (QMP `system_powerdown`, an ACPI
//! power button press, sent to all of them at once; SIGTERM then SIGKILL for a
//! node still running after the grace period), then the hubs (SIGTERM, then
//! SIGKILL), and removes pid files and sockets (QMP, console, the nodes'
//! vhost-user sockets, the hubs' stream sockets). `--purge` also removes the
//! state directory: overlays, seeds, logs, leases.
//!
//! Source: QMP reference, `system_powerdown`; QEMU exits when the guest powers
//! off (without `-no-shutdown`) and on SIGTERM.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::process;
use crate::state::StateDir;

/// Stops the cluster whose state is in `sd`; `grace` is how long nodes get to
/// power off after the ACPI request. Returns one line per node and hub saying
/// how it stopped. Errors: a process that survives SIGKILL, or the state
/// directory cannot be removed (with `purge`). Without state.json there is
/// nothing to stop: Ok, and `purge` still removes the directory.
pub fn down(sd: &StateDir, purge: bool, grace: Duration) -> Result<Vec<String>> {
    let mut report = vec![];
    if let Ok(st) = sd.read() {
        let mut nodes = vec![];
        for n in &st.nodes {
            match process::running(&sd.pid(&n.name), &sd.qmp(&n.name)) {
                Some(pid) => {
                    let asked = process::qmp_powerdown(&sd.qmp(&n.name));
                    if let Err(e) = &asked {
                        report.push(format!("{}: {e:#}; will be terminated", n.name));
                    }
                    nodes.push((n.name.clone(), pid, asked.is_ok()));
                }
                None => report.push(format!("{}: not running", n.name)),
            }
        }
        let deadline = Instant::now() + grace;
        for (name, pid, asked) in &nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            if *asked && process::wait_exit(*pid, left) {
                report.push(format!("{name}: powered off (ACPI)"));
            } else if process::terminate(*pid) {
                report.push(format!(
                    "{name}: terminated (still running {} s after the ACPI power button)",
                    grace.as_secs()
                ));
            } else {
                anyhow::bail!("{name}: pid {pid} survives SIGKILL");
            }
        }
        for n in &st.networks {
            match process::running(&sd.hub_pid(&n.name), &sd.leases(&n.name)) {
                Some(pid) if process::terminate(pid) => report.push(format!("hub {}: stopped", n.name)),
                Some(pid) => anyhow::bail!("hub {}: pid {pid} survives SIGKILL", n.name),
                None => report.push(format!("hub {}: not running", n.name)),
            }
            for p in [sd.hub_pid(&n.name), sd.hub_socket(&n.name)] {
                let _ = std::fs::remove_file(p);
            }
        }
        for n in &st.nodes {
            for p in [sd.pid(&n.name), sd.qmp(&n.name), sd.console(&n.name)] {
                let _ = std::fs::remove_file(p);
            }
            // vhost-user sockets (only NICs on a vhost-user network have one).
            for nic in &n.nics {
                let _ = std::fs::remove_file(sd.vhost_socket(&n.name, &nic.network));
            }
        }
    }
    if purge && sd.root.exists() {
        std::fs::remove_dir_all(&sd.root).with_context(|| format!("remove {}", sd.root.display()))?;
        report.push(format!("removed {}", sd.root.display()));
        // The default `.vmlan/` parent goes too once it holds no other cluster.
        if let Some(parent) = sd
            .root
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == ".vmlan"))
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_stopped_cluster_leaves_no_sockets() {
        let dir = std::env::temp_dir().join(format!("vmlan-down-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = "[cluster]\nname = \"d\"\n[[network]]\nname = \"front\"\nsubnet = \"10.0.3.0/24\"\n\
                    address = \"10.0.3.1\"\n[[network]]\nname = \"back\"\nsubnet = \"10.0.4.0/24\"\n\
                    address = \"10.0.4.1\"\ntransport = \"vhost-user\"\n\
                    [[node]]\nname = \"a\"\nkernel = \"k\"\nnetworks = [\"front\", \"back\"]\n";
        let c = crate::cluster::parse(&dir.join("c.toml"), text).unwrap();
        let sd = StateDir { root: dir.clone() };
        sd.write(&crate::state::State::of(
            &c,
            PathBuf::from("c.toml"),
            vec![vec![], vec![]],
        ))
        .unwrap();
        let files = [
            sd.qmp("a"),
            sd.console("a"),
            sd.vhost_socket("a", "back"),
            sd.hub_socket("front"),
            sd.log("a"),
        ];
        for f in &files {
            std::fs::write(f, "").unwrap();
        }
        let report = down(&sd, false, Duration::ZERO).unwrap();
        assert!(report.contains(&"a: not running".to_string()), "{report:?}");
        for f in &files[..4] {
            assert!(!f.exists(), "{} is left", f.display());
        }
        assert!(sd.log("a").exists(), "the console log is kept without --purge");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
