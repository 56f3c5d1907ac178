//! `vmlan hub --conf-file FILE`: reads dnsmasq's own configuration file
//! format (dnsmasq(8), `-C, --conf-file`): one option per line, its long name
//! without the leading `--`, `name=value` or a bare `name` for a flag; `#`
//! comments and blank lines; repeated options add up like repeated flags.
//! `conf-file=FILE` nests (at most [`MAX_DEPTH`] files deep) and
//! `conf-dir=DIR[,.ext...]` reads a directory, as dnsmasq does.
//!
//! Each line becomes the `vmlan hub` flag of the same name (the names are
//! dnsmasq's), checked there with that flag's own parser, so a bad value is
//! refused naming FILE:LINE and the option. dnsmasq options vmlan lacks are
//! refused naming FILE:LINE; the few in [`IGNORED`] only concern dnsmasq's
//! kernel interfaces and daemon mode and are skipped with a warning.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use vmlan_host::config;
use vmlan_host::dns::config as dns_config;

/// How deep `conf-file=` lines may nest, counting the file given on the
/// command line as depth 1 (an include cycle stops here).
pub const MAX_DEPTH: usize = 8;

/// dnsmasq options that only make sense for a dnsmasq on kernel interfaces or
/// as a daemon; vmlan skips them with a warning: (name, why).
pub const IGNORED: &[(&str, &str)] = &[
    (
        "interface",
        "vmlan serves its own ports (--tap, --stream, --mcast, ...), not a kernel interface",
    ),
    (
        "except-interface",
        "vmlan answers on no kernel interface but the ports it is given",
    ),
    ("bind-interfaces", "vmlan binds no kernel interface"),
    ("bind-dynamic", "vmlan binds no kernel interface"),
    (
        "listen-address",
        "the hub's own address on the segment is --addr; --dns-listen serves the machine's side",
    ),
    ("no-daemon", "vmlan always runs in the foreground"),
    ("keep-in-foreground", "vmlan always runs in the foreground"),
];

/// Options of `vmlan hub` that a conf file may not set: they say how to read
/// the configuration itself (conf-file and conf-dir are read here).
const NOT_IN_FILE: &[&str] = &["config", "test", "help"];

/// dnsmasq 2.90's long option names (`dnsmasq --help`), to tell a dnsmasq
/// option vmlan lacks from a misspelling.
const DNSMASQ_OPTIONS: &[&str] = &[
    "add-cpe-id",
    "add-mac",
    "add-subnet",
    "addn-hosts",
    "address",
    "alias",
    "all-servers",
    "auth-peer",
    "auth-sec-servers",
    "auth-server",
    "auth-soa",
    "auth-ttl",
    "auth-zone",
    "bind-dynamic",
    "bind-interfaces",
    "bogus-nxdomain",
    "bogus-priv",
    "bootp-dynamic",
    "bridge-interface",
    "caa-record",
    "cache-rr",
    "cache-size",
    "clear-on-reload",
    "cname",
    "conf-dir",
    "conf-file",
    "conf-script",
    "connmark-allowlist",
    "connmark-allowlist-enable",
    "conntrack",
    "dhcp-alternate-port",
    "dhcp-authoritative",
    "dhcp-boot",
    "dhcp-broadcast",
    "dhcp-circuitid",
    "dhcp-client-update",
    "dhcp-duid",
    "dhcp-fqdn",
    "dhcp-generate-names",
    "dhcp-host",
    "dhcp-hostsdir",
    "dhcp-hostsfile",
    "dhcp-ignore",
    "dhcp-ignore-clid",
    "dhcp-ignore-names",
    "dhcp-lease-max",
    "dhcp-leasefile",
    "dhcp-luascript",
    "dhcp-mac",
    "dhcp-match",
    "dhcp-name-match",
    "dhcp-no-override",
    "dhcp-option",
    "dhcp-option-force",
    "dhcp-optsdir",
    "dhcp-optsfile",
    "dhcp-proxy",
    "dhcp-pxe-vendor",
    "dhcp-range",
    "dhcp-rapid-commit",
    "dhcp-relay",
    "dhcp-remoteid",
    "dhcp-reply-delay",
    "dhcp-script",
    "dhcp-scriptuser",
    "dhcp-sequential-ip",
    "dhcp-subscrid",
    "dhcp-ttl",
    "dhcp-userclass",
    "dhcp-vendorclass",
    "dns-forward-max",
    "dns-loop-detect",
    "dns-rr",
    "dnssec",
    "dnssec-check-unsigned",
    "dnssec-debug",
    "dnssec-limits",
    "dnssec-no-timecheck",
    "dnssec-timestamp",
    "domain",
    "domain-needed",
    "dumpfile",
    "dumpmask",
    "dynamic-host",
    "edns-packet-max",
    "enable-dbus",
    "enable-ra",
    "enable-tftp",
    "enable-ubus",
    "except-interface",
    "expand-hosts",
    "fast-dns-retry",
    "filter-A",
    "filter-AAAA",
    "filter-rr",
    "filterwin2k",
    "group",
    "help",
    "host-record",
    "hostsdir",
    "ignore-address",
    "interface",
    "interface-name",
    "ipset",
    "keep-in-foreground",
    "leasefile-ro",
    "listen-address",
    "local",
    "local-service",
    "local-ttl",
    "localise-queries",
    "localmx",
    "log-async",
    "log-debug",
    "log-dhcp",
    "log-facility",
    "log-queries",
    "max-cache-ttl",
    "max-port",
    "max-tcp-connections",
    "max-ttl",
    "min-cache-ttl",
    "min-port",
    "mx-host",
    "mx-target",
    "naptr-record",
    "neg-ttl",
    "nftset",
    "no-daemon",
    "no-dhcp-interface",
    "no-dhcpv4-interface",
    "no-dhcpv6-interface",
    "no-hosts",
    "no-ident",
    "no-negcache",
    "no-ping",
    "no-poll",
    "no-resolv",
    "no-round-robin",
    "pid-file",
    "port",
    "port-limit",
    "proxy-dnssec",
    "ptr-record",
    "pxe-prompt",
    "pxe-service",
    "query-port",
    "quiet-dhcp",
    "quiet-dhcp6",
    "quiet-ra",
    "quiet-tftp",
    "ra-param",
    "read-ethers",
    "rebind-domain-ok",
    "rebind-localhost-ok",
    "resolv-file",
    "rev-server",
    "script-arp",
    "script-on-renewal",
    "selfmx",
    "server",
    "servers-file",
    "shared-network",
    "srv-host",
    "stop-dns-rebind",
    "strict-order",
    "strip-mac",
    "strip-subnet",
    "synth-domain",
    "tag-if",
    "test",
    "tftp-lowercase",
    "tftp-max",
    "tftp-mtu",
    "tftp-no-blocksize",
    "tftp-no-fail",
    "tftp-port-range",
    "tftp-root",
    "tftp-secure",
    "tftp-single-port",
    "tftp-unique-root",
    "trust-anchor",
    "txt-record",
    "umbrella",
    "use-stale-cache",
    "user",
    "version",
];

/// What the conf files said: `vmlan hub` arguments (`--name=value` or
/// `--name`, in file order, includes expanded where they stand) for clap to
/// parse, and one warning per ignored line (`FILE:LINE: ...`).
#[derive(Debug, Default)]
pub struct Conf {
    /// The arguments, each one option of one line.
    pub args: Vec<String>,
    /// Warnings for the lines skipped (options in [`IGNORED`]).
    pub warnings: Vec<String>,
}

/// Reads each file of `paths` in order (with their `conf-file=` and
/// `conf-dir=` lines) against `cmd`, the `vmlan hub` command whose long
/// options are the names a line may use.
///
/// # Errors
/// A file that cannot be read; a line with an option that is not vmlan's
/// (naming FILE:LINE and, for dnsmasq's, "vmlan does not support dnsmasq's
/// `NAME`"), a flag given a value, an option without one, a value its flag's
/// parser refuses, a single-valued option given twice, or nesting past
/// [`MAX_DEPTH`].
pub fn read(paths: &[PathBuf], cmd: &clap::Command) -> Result<Conf> {
    let mut r = Reader {
        cmd: cmd
            .clone()
            .no_binary_name(true)
            .disable_help_flag(true)
            .disable_version_flag(true),
        conf: Conf::default(),
        seen: HashMap::new(),
    };
    for p in paths {
        r.file(p, 1).with_context(|| format!("--conf-file {}", p.display()))?;
    }
    Ok(r.conf)
}

struct Reader {
    cmd: clap::Command,
    conf: Conf,
    /// Single-valued options and flags already given: name -> FILE:LINE.
    seen: HashMap<String, String>,
}

impl Reader {
    fn file(&mut self, path: &Path, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            bail!(
                "{}: conf-file nested deeper than {MAX_DEPTH} files (an include cycle?)",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        for (i, raw) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), i + 1);
            let Some((name, value)) = split_line(raw).map_err(|e| anyhow!("{at}: {e}"))? else {
                continue;
            };
            match name.as_str() {
                "conf-file" => {
                    let v = value.ok_or_else(|| anyhow!("{at}: `conf-file` needs a file name"))?;
                    self.file(Path::new(&v), depth + 1)
                        .map_err(|e| anyhow!("{at}: {e:#}"))?;
                }
                "conf-dir" => {
                    let v = value.ok_or_else(|| anyhow!("{at}: `conf-dir` needs a directory"))?;
                    for f in conf_dir(&v).map_err(|e| anyhow!("{at}: conf-dir={v}: {e}"))? {
                        self.file(&f, depth + 1).map_err(|e| anyhow!("{at}: {e:#}"))?;
                    }
                }
                _ => self.option(&at, &name, value)?,
            }
        }
        Ok(())
    }

    /// One `name[=value]` line: refused, ignored, or added to the arguments.
    fn option(&mut self, at: &str, name: &str, value: Option<String>) -> Result<()> {
        if let Some((_, why)) = IGNORED.iter().find(|(n, _)| *n == name) {
            self.conf
                .warnings
                .push(format!("{at}: ignoring dnsmasq's `{name}`: {why}"));
            return Ok(());
        }
        let arg = self
            .cmd
            .get_arguments()
            .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()))
            .find(|a| a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name)));
        let Some(arg) = arg else {
            if DNSMASQ_OPTIONS.contains(&name) {
                bail!("{at}: vmlan does not support dnsmasq's `{name}` (README, \"--conf-file\")");
            }
            bail!("{at}: `{name}` is neither a dnsmasq option nor a vmlan hub flag");
        };
        let takes_value = arg.get_action().takes_values();
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        let id = arg.get_id().to_string();
        let arg_text = match (&value, takes_value) {
            (Some(_), false) => bail!("{at}: `{name}` is a flag and takes no value"),
            (None, true) => bail!("{at}: `{name}` needs a value ({name}=...)"),
            (Some(v), true) => {
                if v.is_empty() {
                    bail!("{at}: `{name}` needs a value ({name}=...)");
                }
                check_value(name, v).map_err(|e| anyhow!("{at}: {name}={v}: {e}"))?;
                format!("--{name}={v}")
            }
            (None, false) => format!("--{name}"),
        };
        if !repeatable {
            if let Some(first) = self.seen.get(&id) {
                if !takes_value {
                    return Ok(()); // a flag said twice is still on
                }
                bail!("{at}: `{name}` takes one value and was already given at {first}");
            }
            self.seen.insert(id, at.to_string());
        }
        // clap's own checks (numbers, for --stats and --dns-forward-max).
        if let Err(e) = self.cmd.clone().try_get_matches_from([&arg_text]) {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default();
            bail!("{at}: {}", first.trim_start_matches("error: "));
        }
        self.conf.args.push(arg_text);
        Ok(())
    }
}

/// Splits one line into the option's name and its value, or None for a
/// comment or blank line. Whitespace around the line, the name and the value
/// is dropped; `#` starts a comment at the start of a line or after
/// whitespace (so `server=10.1.1.1#5353` and `address=/#/...` keep theirs);
/// double quotes are removed, with `#` kept between them and the escapes
/// `\\ \" \t \n \r \e \b`, as dnsmasq. A `,` between quotes is refused: vmlan's
/// parsers would take it as a separator.
fn split_line(raw: &str) -> Result<Option<(String, Option<String>)>, String> {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = raw.chars().peekable();
    let mut prev_space = true;
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                let e = chars.next().ok_or("a `\\` ends the line inside quotes")?;
                out.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    't' => '\t',
                    'n' => '\n',
                    'r' => '\r',
                    'e' => '\x1b',
                    'b' => '\x08',
                    other => return Err(format!("unknown escape `\\{other}` inside quotes")),
                });
            }
            '#' if !quoted && prev_space => break,
            ',' if quoted => return Err("a `,` inside quotes is not supported".into()),
            c => out.push(c),
        }
        prev_space = c.is_whitespace() && !quoted;
    }
    if quoted {
        return Err("a `\"` is not closed".into());
    }
    let line = out.trim();
    if line.is_empty() {
        return Ok(None);
    }
    Ok(Some(match line.split_once('=') {
        Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
        None => (line.to_string(), None),
    }))
}

/// The files `conf-dir=DIR[,.ext...]` reads, as dnsmasq: every file of DIR
/// in name order, skipping names that start with `.`, end with `~`, or start
/// and end with `#`, and those ending in a listed extension; when an extension
/// is given as `*.ext`, only files ending in those are read.
fn conf_dir(v: &str) -> Result<Vec<PathBuf>, String> {
    let mut parts = v.split(',').map(str::trim);
    let dir = parts.next().unwrap_or_default();
    let (mut only, mut skip) = (Vec::new(), Vec::new());
    for p in parts.filter(|p| !p.is_empty()) {
        match p.strip_prefix('*') {
            Some(ext) => only.push(ext.to_string()),
            None => skip.push(p.to_string()),
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read the directory: {e}"))?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|e| format!("cannot read the directory: {e}"))?;
        let name = e.file_name().to_string_lossy().to_string();
        let hidden = name.starts_with('.')
            || name.ends_with('~')
            || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'));
        let wanted = (only.is_empty() || only.iter().any(|x| name.ends_with(x.as_str())))
            && !skip.iter().any(|x| name.ends_with(x.as_str()));
        if hidden || !wanted || !e.path().is_file() {
            continue;
        }
        files.push(e.path());
    }
    files.sort();
    Ok(files)
}

/// Checks a value with the parser its `vmlan hub` flag goes through at start
/// (the same function, so a conf file and the flag accept the same strings);
/// options checked only by clap or later (paths, numbers) pass here.
fn check_value(name: &str, v: &str) -> Result<(), String> {
    let cfg = |r: Result<(), config::ConfigError>| r.map_err(|e| e.reason);
    match name {
        "dhcp-range" => cfg(config::parse_dhcp_range_any(v).map(drop)),
        "dhcp-host" => cfg(config::parse_dhcp_host(v).map(drop)),
        "dhcp-option" => cfg(config::parse_dhcp_option(v).map(drop)),
        "host-record" => cfg(config::parse_host_record(v).map(drop)),
        "domain" => cfg(config::parse_domain(v).map(drop)),
        "dhcp-boot" => cfg(config::parse_dhcp_boot(v).map(drop)),
        "addr" => cfg(config::parse_addr(v).map(drop)),
        "mac" => cfg(config::parse_mac("--mac", v).map(drop)),
        "cname" => cfg(dns_config::parse_cname(v).map(drop)),
        "srv-host" => cfg(dns_config::parse_srv_host(v).map(drop)),
        "address" => cfg(dns_config::parse_address(v).map(drop)),
        "server" => cfg(dns_config::parse_server("--server", v).map(drop)),
        "local" => cfg(dns_config::parse_server("--local", v).map(drop)),
        "dns-forward-max" => cfg(dns_config::parse_forward_max(v).map(drop)),
        "vxlan" => v.parse::<vmlan_hub::port::vxlan::VxlanConfig>().map(drop),
        "stream" | "connect" => v
            .parse::<vmlan_hub::port::stream::StreamAddr>()
            .map(drop)
            .map_err(|e| e.to_string()),
        "dgram" => v
            .parse::<vmlan_hub::port::dgram::DgramAddr>()
            .map(drop)
            .map_err(|e| e.to_string()),
        "mcast" => v
            .trim()
            .parse::<SocketAddrV4>()
            .map(drop)
            .map_err(|_| "expected a multicast GROUP:PORT such as 230.0.0.1:1234".into()),
        "dns-listen" => v
            .trim()
            .parse::<SocketAddr>()
            .map(drop)
            .map_err(|_| "expected ADDR:PORT such as 127.0.0.1:5353".into()),
        "api" => crate::api::parse_addr(v).map(drop).map_err(|e| format!("{e:#}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Args;

    fn cmd() -> clap::Command {
        crate::hub_cmd::HubArgs::augment_args(clap::Command::new("hub"))
    }

    /// A scratch directory of its own for one test.
    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmlan-conf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read_text(tag: &str, text: &str) -> (PathBuf, Result<Conf>) {
        let d = dir(tag);
        let f = d.join("dnsmasq.conf");
        std::fs::write(&f, text).unwrap();
        let r = read(std::slice::from_ref(&f), &cmd());
        (f, r)
    }

    /// Comments (whole-line and after whitespace), blank lines and
    /// whitespace are skipped; a `#` inside a value stays.
    #[test]
    fn comments_blank_lines_and_whitespace() {
        let text = "# Yomi\n\n   # indented comment\n  domain = cluster   # trailing\n\
                    server=10.9.9.9#5353\naddress=/#/127.0.0.1\r\ndhcp-boot=\"boot #1.efi\"\n";
        let (_, r) = read_text("comments", text);
        let c = r.unwrap();
        assert_eq!(
            c.args,
            [
                "--domain=cluster",
                "--server=10.9.9.9#5353",
                "--address=/#/127.0.0.1",
                "--dhcp-boot=boot #1.efi",
            ]
        );
        assert!(c.warnings.is_empty());
    }

    /// Bare names are flags; a flag said twice is once; a flag with a value
    /// and an option without one are refused naming FILE:LINE.
    #[test]
    fn bare_flags() {
        let (_, r) = read_text(
            "flags",
            "log-dhcp\nno-resolv\ndhcp-authoritative\nlog-dhcp\nenable-ra\n",
        );
        assert_eq!(
            r.unwrap().args,
            ["--log-dhcp", "--no-resolv", "--dhcp-authoritative", "--enable-ra"]
        );
        let (f, r) = read_text("flagvalue", "log-queries=extra\n");
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains(&format!("{}:1", f.display())) && e.contains("`log-queries` is a flag"),
            "{e}"
        );
        let (f, r) = read_text("novalue", "\ndhcp-range\n");
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains(&format!("{}:2", f.display())) && e.contains("needs a value"),
            "{e}"
        );
    }

    /// Repeated list options add up in order; a single-valued one given
    /// twice is refused naming both places.
    #[test]
    fn repeated_options() {
        let (_, r) = read_text(
            "repeat",
            "dhcp-host=00:00:00:11:11:11,10.0.3.101,master\ndhcp-host=00:00:00:22:22:22,10.0.3.102,worker1\n\
             host-record=master,10.0.3.101\ndhcp-leasefile=leases\n",
        );
        assert_eq!(
            r.unwrap().args,
            [
                "--dhcp-host=00:00:00:11:11:11,10.0.3.101,master",
                "--dhcp-host=00:00:00:22:22:22,10.0.3.102,worker1",
                "--host-record=master,10.0.3.101",
                "--dhcp-leasefile=leases",
            ]
        );
        let (f, r) = read_text("twice", "domain=a\n# x\ndomain=b\n");
        let e = format!("{:#}", r.unwrap_err());
        let p = f.display();
        assert!(
            e.contains(&format!("{p}:3: `domain`")) && e.contains(&format!("at {p}:1")),
            "{e}"
        );
        // dhcp-leasefile is --leasefile's alias: one value between both names.
        let (_, r) = read_text("alias", "dhcp-leasefile=a\nleasefile=b\n");
        assert!(format!("{:#}", r.unwrap_err()).contains("already given"));
    }

    /// vmlan's own flags read from a conf file too, checked by their parsers;
    /// two conf files share one set of options (a flag in both is on once,
    /// a single value in both is refused).
    #[test]
    fn vmlan_flags_and_two_files() {
        let d = dir("two");
        let (a, b) = (d.join("a.conf"), d.join("b.conf"));
        std::fs::write(
            &a,
            "addr=10.0.3.1/24\ntap=vmlan0\nlog-dhcp\ndns-listen=127.0.0.1:5353\n",
        )
        .unwrap();
        std::fs::write(&b, "log-dhcp\nmcast=230.0.0.1:1234\n").unwrap();
        let c = read(&[a.clone(), b.clone()], &cmd()).unwrap();
        assert_eq!(
            c.args,
            [
                "--addr=10.0.3.1/24",
                "--tap=vmlan0",
                "--log-dhcp",
                "--dns-listen=127.0.0.1:5353",
                "--mcast=230.0.0.1:1234",
            ]
        );
        std::fs::write(&b, "addr=10.0.4.1/24\n").unwrap();
        let e = format!("{:#}", read(&[a.clone(), b.clone()], &cmd()).unwrap_err());
        assert!(e.contains("b.conf:1: `addr`") && e.contains("a.conf:1"), "{e}");
        std::fs::write(&b, "dns-listen=localhost\n").unwrap();
        let e = format!("{:#}", read(&[b], &cmd()).unwrap_err());
        assert!(e.contains("b.conf:1: dns-listen=localhost: expected ADDR:PORT"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// An option dnsmasq has and vmlan lacks is refused naming FILE:LINE and
    /// the option; a name that is no option at all, too.
    #[test]
    fn unsupported_option_names_file_and_line() {
        let (f, r) = read_text("unsupported", "domain=cluster\n\ncache-size=1000\n");
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains(&format!(
                "{}:3: vmlan does not support dnsmasq's `cache-size`",
                f.display()
            )),
            "{e}"
        );
        let (f, r) = read_text("unknown", "dhcp-rang=10.0.3.5,10.0.3.9\n");
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains(&format!("{}:1: `dhcp-rang`", f.display())), "{e}");
        for name in ["config=x.toml", "test", "help"] {
            let (_, r) = read_text("notinfile", name);
            assert!(r.is_err(), "{name} accepted in a conf file");
        }
    }

    /// An ignored option gives a warning naming FILE:LINE and the option,
    /// and no argument.
    #[test]
    fn ignored_option_warns() {
        let (f, r) = read_text(
            "ignored",
            "interface=vmlan\nexcept-interface=lo\nbind-interfaces\nno-daemon\ndomain=cluster\n",
        );
        let c = r.unwrap();
        assert_eq!(c.args, ["--domain=cluster"]);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with(&format!("{}:1: ignoring dnsmasq's `interface`", f.display())),
            "{:?}",
            c.warnings
        );
    }

    /// A value the flag's parser refuses is refused naming FILE:LINE, the
    /// option and the parser's reason; so is a number clap refuses.
    #[test]
    fn bad_value_names_file_line_and_option() {
        let (f, r) = read_text("badvalue", "# range\ndhcp-range=10.0.3.100,10.0.3.x\n");
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains(&format!("{}:2: dhcp-range=10.0.3.100,10.0.3.x: ", f.display())),
            "{e}"
        );
        let (f, r) = read_text("badhost", "dhcp-host=00:00:00:zz:11:11,10.0.3.101,master\n");
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains(&format!("{}:1: dhcp-host=", f.display())), "{e}");
        let (f, r) = read_text("badnumber", "stats=often\n");
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains(&format!("{}:1: ", f.display())) && e.contains("often"),
            "{e}"
        );
        let (_, r) = read_text("badfwd", "dns-forward-max=70000\n");
        assert!(format!("{:#}", r.unwrap_err()).contains("4096"));
        let (_, r) = read_text("quote", "domain=\"cluster\n");
        assert!(format!("{:#}", r.unwrap_err()).contains(":1: a `\"` is not closed"));
    }

    /// conf-file nests where it stands; a cycle stops at the depth limit
    /// naming the including lines; conf-dir reads a directory in name order,
    /// skipping backups and excluded extensions, or only `*.ext` files.
    #[test]
    fn conf_file_and_conf_dir() {
        let d = dir("nest");
        let inner = d.join("inner.conf");
        std::fs::write(&inner, "domain=cluster\n").unwrap();
        let sub = d.join("conf.d");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("20-b.conf"), "log-dhcp\n").unwrap();
        std::fs::write(sub.join("10-a.conf"), "log-queries\n").unwrap();
        std::fs::write(sub.join("30-c.conf~"), "bogus\n").unwrap();
        std::fs::write(sub.join(".hidden"), "bogus\n").unwrap();
        std::fs::write(sub.join("40-d.bak"), "bogus\n").unwrap();
        let top = d.join("top.conf");
        std::fs::write(
            &top,
            format!(
                "no-resolv\nconf-file={}\nconf-dir={},.bak\n",
                inner.display(),
                sub.display()
            ),
        )
        .unwrap();
        let c = read(std::slice::from_ref(&top), &cmd()).unwrap();
        assert_eq!(
            c.args,
            ["--no-resolv", "--domain=cluster", "--log-queries", "--log-dhcp"]
        );
        std::fs::write(&top, format!("conf-dir={},*.bak\n", sub.display())).unwrap();
        let e = format!("{:#}", read(std::slice::from_ref(&top), &cmd()).unwrap_err());
        assert!(
            e.contains("40-d.bak:1") && e.contains("`bogus`"),
            "only *.bak read: {e}"
        );
        let cycle = d.join("cycle.conf");
        std::fs::write(&cycle, format!("conf-file={}\n", cycle.display())).unwrap();
        let e = format!("{:#}", read(std::slice::from_ref(&cycle), &cmd()).unwrap_err());
        assert!(e.contains("nested deeper than 8") && e.contains("cycle.conf:1"), "{e}");
        let e = format!("{:#}", read(&[d.join("absent.conf")], &cmd()).unwrap_err());
        assert!(e.contains("absent.conf") && e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
