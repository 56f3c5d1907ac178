//! `vmlan leases`: prints the leases a hub holds, read from its lease file and
//! journal (without disturbing a running hub), as a table or as JSON. The
//! table lists the DHCPv6 leases too, after the DHCP ones; so does the JSON
//! array, each row with a `family` ("ipv4" or "ipv6"): the IPv4 rows keep
//! their fields, the DHCPv6 rows (RFC 8415 IA_NA leases) have `ip` (the IPv6
//! address), `duid`, `iaid` and `mac` (from a DUID-LLT/DUID-LL, else null).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use vmlan_store as store;

/// Flags of `vmlan leases`.
#[derive(Args, Debug)]
pub struct LeasesArgs {
    /// The hub's lease file (its --leasefile). Example: --leasefile ./leases
    #[arg(long, alias = "dhcp-leasefile", value_name = "FILE", conflicts_with = "config")]
    leasefile: Option<PathBuf>,

    /// Take the lease file from this hub config (its `leasefile` key).
    /// Example: --config examples/yomi-hub.toml
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print JSON: an array of {family: "ipv4", ip, mac, hostname, client_id, expires,
    /// remaining_secs}, then the DHCPv6 leases as {family: "ipv6", ip, mac (from the
    /// DUID, or null), hostname, duid, iaid, expires, remaining_secs}; expires in Unix
    /// seconds (0: infinite), remaining_secs null when infinite.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Deserialize)]
struct ConfigLeasefile {
    leasefile: Option<PathBuf>,
}

/// Prints the leases.
pub fn run(args: LeasesArgs) -> Result<()> {
    let path = match (&args.leasefile, &args.config) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => {
            let text = std::fs::read_to_string(c).with_context(|| format!("--config {}: cannot read", c.display()))?;
            // Only the key we need; the hub checks the rest.
            let table: toml::Table = toml::from_str(&text).with_context(|| format!("--config {}", c.display()))?;
            let cfg: ConfigLeasefile = table.try_into().with_context(|| format!("--config {}", c.display()))?;
            let Some(p) = cfg.leasefile else {
                bail!("--config {}: it has no `leasefile`", c.display())
            };
            // A relative path in a config file is relative to the hub's directory, as the hub reads it.
            p
        }
        (None, None) => bail!("give --leasefile FILE or --config FILE"),
    };
    let db = store::read(&path).with_context(|| format!("--leasefile {}: cannot read", path.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let leases: Vec<_> = db.sorted().into_iter().filter(|l| !l.expired(now)).collect();
    let hex = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    if args.json {
        let mut rows: Vec<serde_json::Value> = leases
            .iter()
            .map(|l| {
                serde_json::json!({
                    "family": "ipv4",
                    "ip": l.ip.to_string(),
                    "mac": l.mac.to_string(),
                    "hostname": l.hostname,
                    "client_id": l.client_id.as_deref().map(hex),
                    "expires": l.expires,
                    "remaining_secs": (l.expires != 0).then(|| l.expires.saturating_sub(now)),
                })
            })
            .collect();
        let mut leases6: Vec<_> = db.leases6().filter(|l| !l.expired(now)).collect();
        leases6.sort_unstable_by_key(|l| l.addr);
        rows.extend(leases6.iter().map(|l| {
            serde_json::json!({
                "family": "ipv6",
                "ip": l.addr.to_string(),
                "mac": vmlan_launcher::status::duid_mac(&l.duid).map(|m| m.to_string()),
                "hostname": l.hostname,
                "duid": hex(&l.duid),
                "iaid": l.iaid,
                "expires": l.expires,
                "remaining_secs": (l.expires != 0).then(|| l.expires.saturating_sub(now)),
            })
        }));
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<15}  {:<17}  {:<20}  {:>10}  CLIENT-ID",
        "IP", "MAC", "HOSTNAME", "EXPIRES-IN"
    );
    for l in leases {
        let left = if l.expires == 0 {
            "infinite".to_string()
        } else {
            format!("{}s", l.expires.saturating_sub(now))
        };
        println!(
            "{:<15}  {:<17}  {:<20}  {:>10}  {}",
            l.ip.to_string(),
            l.mac.to_string(),
            l.hostname.as_deref().unwrap_or("*"),
            left,
            l.client_id.as_deref().map(hex).unwrap_or_else(|| "*".into())
        );
    }
    let mut leases6: Vec<_> = db.leases6().filter(|l| !l.expired(now)).collect();
    if !leases6.is_empty() {
        leases6.sort_unstable_by_key(|l| l.addr);
        println!();
        println!(
            "{:<39}  {:>10}  {:<20}  {:>10}  CLIENT-DUID",
            "IPv6", "IAID", "HOSTNAME", "EXPIRES-IN"
        );
        for l in leases6 {
            let left = if l.expires == 0 {
                "infinite".to_string()
            } else {
                format!("{}s", l.expires.saturating_sub(now))
            };
            println!(
                "{:<39}  {:>10}  {:<20}  {:>10}  {}",
                l.addr.to_string(),
                l.iaid,
                l.hostname.as_deref().unwrap_or("*"),
                left,
                hex(&l.duid)
            );
        }
    }
    Ok(())
}
