//! `vmlan ctl`: the runtime API of a running hub (`vmlan hub --api
//! unix:PATH`, README "Runtime API") from the shell, through
//! vmlan-launcher's `api_client` (HTTP/1.1 over the unix socket). Verbs:
//! `leases`, `ports`, `segments`, `events`, `reservations [add|del]`, `records
//! [add|del]`; a table by default, the API's own JSON with `--json`. The
//! socket: `--api PATH`, else `$VMLAN_API`, else `-f CLUSTER.toml [--network
//! NET]` (the hub `vmlan up` started for that network, `hub-NET.api` in the
//! cluster's state directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use vmlan_launcher::api_client::ApiClient;
use vmlan_launcher::state;

/// Flags of `vmlan ctl`.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The hub's API socket (its --api unix:PATH, without `unix:`).
    /// Example: --api /run/user/1000/vmlan.api
    #[arg(long, value_name = "PATH", env = "VMLAN_API", global = true)]
    api: Option<PathBuf>,
    /// Or the cluster file whose `vmlan up` started the hub (its state
    /// directory holds hub-NET.api). Example: -f examples/yomi.toml
    #[arg(short, long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    /// With -f: the network whose hub to ask (needed when the cluster has more
    /// than one). Example: --network lan
    #[arg(long, value_name = "NET", global = true)]
    network: Option<String>,
    /// Print the API's JSON instead of a table (events: one JSON object per line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

/// What `vmlan ctl` does.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// The live DHCP and DHCPv6 leases (GET /leases?family=all).
    Leases,
    /// The ports with their counters and MACs (GET /ports).
    Ports,
    /// The segment the hub serves: its addresses, ranges and counts (GET /segments).
    Segments,
    /// Follow the event stream (GET /events): lease, port and MAC changes, until interrupted.
    Events(EventsArgs),
    /// The reservations (GET /reservations), or add or delete one.
    Reservations {
        #[command(subcommand)]
        op: Option<ResOp>,
    },
    /// The DNS records (GET /records), or add or delete one.
    Records {
        #[command(subcommand)]
        op: Option<RecOp>,
    },
}

/// Flags of `vmlan ctl events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// First a `current` lease event per live lease.
    #[arg(long)]
    current: bool,
    /// Only these types, comma-separated: lease, port, mac. Example: --types lease
    #[arg(long, value_name = "LIST")]
    types: Option<String>,
    /// Stop after this many events (keep-alive lines not counted). Example: --count 1
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds (checked as lines arrive, at least every 15 s).
    /// Example: --timeout 60
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

/// `vmlan ctl reservations add|del`.
#[derive(Subcommand, Debug)]
pub enum ResOp {
    /// Reserve addresses and a name for a MAC (POST /reservations).
    Add {
        /// The client's MAC. Example: 52:54:00:00:00:05
        mac: String,
        /// Its IPv4 address. Example: --ipv4 10.0.3.5
        #[arg(long, value_name = "IP")]
        ipv4: Option<String>,
        /// Its IPv6 address. Example: --ipv6 fd00::5
        #[arg(long, value_name = "IP")]
        ipv6: Option<String>,
        /// Its hostname. Example: --hostname n1
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        /// Its lease time in seconds. Example: --lease-time 3600
        #[arg(long, value_name = "S")]
        lease_time: Option<u64>,
    },
    /// Delete the reservation added through the API for a MAC (DELETE /reservations/MAC).
    Del {
        /// The client's MAC.
        mac: String,
    },
}

/// `vmlan ctl records add|del`.
#[derive(Subcommand, Debug)]
pub enum RecOp {
    /// Publish a record (POST /records): A/AAAA with --ip, or CNAME, SRV, PTR.
    Add {
        /// The record's name. Example: db.cluster
        name: String,
        /// An A or AAAA record to this address. Example: --ip 10.0.3.5
        #[arg(long, value_name = "IP", group = "what")]
        ip: Option<String>,
        /// A CNAME to this name. Example: --cname n1.cluster
        #[arg(long, value_name = "TARGET", group = "what")]
        cname: Option<String>,
        /// An SRV record: TARGET:PORT[:PRIORITY:WEIGHT]. Example: --srv n1.cluster:5432:0:10
        #[arg(long, value_name = "TARGET:PORT[:PRIO:WEIGHT]", group = "what")]
        srv: Option<String>,
        /// A PTR record to this name (NAME being a reverse name). Example: --ptr n1.cluster
        #[arg(long, value_name = "TARGET", group = "what")]
        ptr: Option<String>,
        /// Its TTL in seconds. Example: --ttl 60
        #[arg(long, value_name = "S")]
        ttl: Option<u32>,
    },
    /// Withdraw the records added through the API under a name (DELETE /records/NAME).
    Del {
        /// The record's name.
        name: String,
        /// Only records of this type (A, AAAA, CNAME, SRV, PTR). Example: --type A
        #[arg(long = "type", value_name = "T")]
        rtype: Option<String>,
    },
}

/// The API socket the flags name.
fn socket(a: &CtlArgs) -> Result<PathBuf> {
    if let Some(p) = &a.api {
        return Ok(p.clone());
    }
    let Some(f) = &a.file else {
        bail!("give --api PATH (the hub's --api socket), set VMLAN_API, or give -f CLUSTER.toml");
    };
    let sd = state::locate(Some(f), None, &std::env::current_dir()?)?;
    if let Some(n) = &a.network {
        return Ok(sd.hub_api(n));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&sd.root)
        .with_context(|| {
            format!(
                "-f {}: no state directory {} (was `vmlan up` run?)",
                f.display(),
                sd.root.display()
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hub-") && n.ends_with(".api"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "-f {}: no hub API socket in {} (is the cluster up?)",
            f.display(),
            sd.root.display()
        ),
        _ => bail!(
            "-f {}: several networks ({}); give --network NET",
            f.display(),
            found
                .iter()
                .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("hub-")?.strip_suffix(".api"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A JSON value as table text: strings bare, null as `*`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "*".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints `rows` under `heads`, columns as wide as their widest cell.
fn table(heads: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = heads.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<0$}", w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(heads.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds left until `expires` (Unix seconds; 0 infinite).
fn left(expires: &Value) -> String {
    match expires.as_u64() {
        Some(0) => "infinite".into(),
        Some(e) => format!("{}s", e.saturating_sub(unix_now())),
        None => "*".into(),
    }
}

/// The rows of `v` (an array).
fn rows(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// One human line for an event.
fn event_line(v: &Value) -> String {
    let head = format!("{} {:<5} {:<8}", cell(&v["time"]), cell(&v["type"]), cell(&v["event"]));
    match v["type"].as_str() {
        Some("lease") => format!(
            "{head} {} {} {} expires-in {}",
            cell(&v["ip"]),
            cell(&v["mac"]),
            cell(&v["hostname"]),
            left(&v["expires"])
        ),
        Some("port") => format!("{head} port {} {}", cell(&v["id"]), cell(&v["name"])),
        Some("mac") => match v.get("from_port") {
            Some(f) => format!(
                "{head} {} port {} (from {})",
                cell(&v["mac"]),
                cell(&v["port"]),
                cell(f)
            ),
            None => format!("{head} {} port {}", cell(&v["mac"]), cell(&v["port"])),
        },
        Some("lagged") => format!("{} lagged: {} events missed", cell(&v["time"]), cell(&v["missed"])),
        _ => v.to_string(),
    }
}

/// `vmlan ctl`.
pub fn run(a: CtlArgs) -> Result<()> {
    let path = socket(&a)?;
    let c = ApiClient::new(&path)?;
    let print_json = |v: &Value| -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    };
    match &a.verb {
        Verb::Leases => {
            let v = c.get("/leases?family=all")?;
            if a.json {
                return print_json(&v);
            }
            let r: Vec<Vec<String>> = rows(&v)
                .iter()
                .map(|l| {
                    vec![
                        cell(&l["family"]),
                        cell(&l["ip"]),
                        cell(&l["mac"]),
                        cell(&l["hostname"]),
                        left(&l["expires"]),
                    ]
                })
                .collect();
            table(&["FAMILY", "IP", "MAC", "HOSTNAME", "EXPIRES-IN"], &r);
        }
        Verb::Ports => {
            let v = c.get("/ports")?;
            if a.json {
                return print_json(&v);
            }
            let r: Vec<Vec<String>> = rows(&v)
                .iter()
                .map(|p| {
                    let macs: Vec<String> = rows(&p["macs"]).iter().map(cell).collect();
                    vec![
                        cell(&p["id"]),
                        cell(&p["kind"]),
                        cell(&p["name"]),
                        cell(&p["rx_frames"]),
                        cell(&p["tx_frames"]),
                        cell(&p["drops"]),
                        cell(&p["errors"]),
                        if macs.is_empty() { "*".into() } else { macs.join(",") },
                    ]
                })
                .collect();
            table(&["ID", "KIND", "NAME", "RX", "TX", "DROPS", "ERRORS", "MACS"], &r);
        }
        Verb::Segments => {
            let v = c.get("/segments")?;
            if a.json {
                return print_json(&v);
            }
            let r: Vec<Vec<String>> = rows(&v)
                .iter()
                .map(|s| {
                    let ranges: Vec<String> =
                        rows(&s["dhcp_ranges"])
                            .iter()
                            .map(|r| format!("{}-{}", cell(&r["start"]), cell(&r["end"])))
                            .chain(rows(&s["ipv6_ranges"]).iter().map(|r| {
                                format!("{}/{} {}", cell(&r["start"]), cell(&r["prefix_len"]), cell(&r["mode"]))
                            }))
                            .collect();
                    vec![
                        cell(&s["addr"]),
                        cell(&s["mac"]),
                        if s["host"] == true { "on".into() } else { "off".into() },
                        if ranges.is_empty() {
                            "*".into()
                        } else {
                            ranges.join(",")
                        },
                        cell(&s["domain"]),
                        cell(&s["ports"]),
                        cell(&s["macs"]),
                        cell(&s["leases"]),
                    ]
                })
                .collect();
            table(
                &["ADDR", "MAC", "HOST", "RANGES", "DOMAIN", "PORTS", "MACS", "LEASES"],
                &r,
            );
        }
        Verb::Events(e) => {
            let mut q = Vec::new();
            if e.current {
                q.push("current=true".to_string());
            }
            if let Some(t) = &e.types {
                q.push(format!("types={t}"));
            }
            let route = if q.is_empty() {
                "/events".to_string()
            } else {
                format!("/events?{}", q.join("&"))
            };
            let start = Instant::now();
            let limit = e.timeout.map(Duration::from_secs);
            let mut n = 0u64;
            if e.count == Some(0) {
                return Ok(());
            }
            c.stream(&route, |v| {
                if limit.is_some_and(|l| start.elapsed() >= l) {
                    return false;
                }
                if v["type"] == "keepalive" {
                    return true;
                }
                if a.json {
                    println!("{v}");
                } else {
                    println!("{}", event_line(&v));
                }
                n += 1;
                e.count.is_none_or(|c| n < c)
            })?;
        }
        Verb::Reservations { op: None } => {
            let v = c.get("/reservations")?;
            if a.json {
                return print_json(&v);
            }
            table(
                &["MAC", "IPV4", "IPV6", "HOSTNAME", "LEASE-TIME", "SOURCE"],
                &reservation_rows(&v),
            );
        }
        Verb::Reservations {
            op:
                Some(ResOp::Add {
                    mac,
                    ipv4,
                    ipv6,
                    hostname,
                    lease_time,
                }),
        } => {
            let mut body = json!({"mac": mac});
            for (k, v) in [("ipv4", ipv4), ("ipv6", ipv6), ("hostname", hostname)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if let Some(t) = lease_time {
                body["lease_time"] = json!(t);
            }
            let v = c.post("/reservations", &body)?;
            if a.json {
                return print_json(&v);
            }
            table(
                &["MAC", "IPV4", "IPV6", "HOSTNAME", "LEASE-TIME", "SOURCE"],
                &reservation_rows(&json!([v])),
            );
        }
        Verb::Reservations {
            op: Some(ResOp::Del { mac }),
        } => {
            let v = c.delete(&format!("/reservations/{mac}"))?;
            if a.json {
                return print_json(&v);
            }
            println!("removed {}", cell(&v["removed"]));
        }
        Verb::Records { op: None } => {
            let v = c.get("/records")?;
            if a.json {
                return print_json(&v);
            }
            table(&["NAME", "TYPE", "VALUE", "TTL", "API"], &record_rows(&v));
        }
        Verb::Records {
            op:
                Some(RecOp::Add {
                    name,
                    ip,
                    cname,
                    srv,
                    ptr,
                    ttl,
                }),
        } => {
            let mut body = json!({"name": name});
            if let Some(ip) = ip {
                body["ip"] = json!(ip);
            } else if let Some(t) = cname {
                body["type"] = json!("CNAME");
                body["target"] = json!(t);
            } else if let Some(t) = ptr {
                body["type"] = json!("PTR");
                body["target"] = json!(t);
            } else if let Some(s) = srv {
                let parts: Vec<&str> = s.split(':').collect();
                let num = |i: usize, what: &str| -> Result<u64> {
                    parts[i]
                        .parse()
                        .with_context(|| format!("--srv {s}: {what} {:?} is not a number", parts[i]))
                };
                if parts.len() != 2 && parts.len() != 4 {
                    bail!("--srv {s}: expected TARGET:PORT or TARGET:PORT:PRIORITY:WEIGHT");
                }
                body["type"] = json!("SRV");
                body["target"] = json!(parts[0]);
                body["port"] = json!(num(1, "port")?);
                if parts.len() == 4 {
                    body["priority"] = json!(num(2, "priority")?);
                    body["weight"] = json!(num(3, "weight")?);
                }
            } else {
                bail!("records add {name}: give --ip, --cname, --srv or --ptr");
            }
            if let Some(t) = ttl {
                body["ttl"] = json!(t);
            }
            let v = c.post("/records", &body)?;
            if a.json {
                return print_json(&v);
            }
            table(&["NAME", "TYPE", "VALUE", "TTL", "API"], &record_rows(&json!([v])));
        }
        Verb::Records {
            op: Some(RecOp::Del { name, rtype }),
        } => {
            let route = match rtype {
                Some(t) => format!("/records/{name}?type={t}"),
                None => format!("/records/{name}"),
            };
            let v = c.delete(&route)?;
            if a.json {
                return print_json(&v);
            }
            println!("removed {}", cell(&v["removed"]));
        }
    }
    Ok(())
}

/// Table rows of `GET /reservations` (or one added row).
fn reservation_rows(v: &Value) -> Vec<Vec<String>> {
    rows(v)
        .iter()
        .map(|r| {
            ["mac", "ipv4", "ipv6", "hostname", "lease_time", "source"]
                .iter()
                .map(|k| cell(&r[*k]))
                .collect()
        })
        .collect()
}

/// Table rows of `GET /records`: `{name, type, value, ttl, api}` rows, or
/// the older `{name, ips, api}` rows (one A/AAAA row per address). A row
/// `POST /records` answered (`{name, ip, ttl}`) is shown as its A/AAAA.
fn record_rows(v: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in rows(v) {
        if r.get("type").is_some() {
            out.push(vec![
                cell(&r["name"]),
                cell(&r["type"]),
                cell(&r["value"]),
                cell(&r["ttl"]),
                cell(&r["api"]),
            ]);
            continue;
        }
        let ips: Vec<&Value> = match (&r["ips"], &r["ip"]) {
            (Value::Array(a), _) => a.iter().collect(),
            (_, ip @ Value::String(_)) => vec![ip],
            _ => vec![],
        };
        for ip in ips {
            let t = if cell(ip).contains(':') { "AAAA" } else { "A" };
            let api = if r.get("api").is_some() {
                cell(&r["api"])
            } else {
                "true".into()
            };
            out.push(vec![cell(&r["name"]), t.into(), cell(ip), cell(&r["ttl"]), api]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_rows_take_both_shapes() {
        let new = json!([{"name": "a", "type": "CNAME", "value": "b", "ttl": 0, "api": true}]);
        assert_eq!(record_rows(&new), [["a", "CNAME", "b", "0", "true"]]);
        let old = json!([{"name": "a", "ips": ["10.0.3.5", "fd00::5"], "api": false}]);
        assert_eq!(
            record_rows(&old),
            [
                ["a", "A", "10.0.3.5", "*", "false"],
                ["a", "AAAA", "fd00::5", "*", "false"]
            ]
        );
    }
}
