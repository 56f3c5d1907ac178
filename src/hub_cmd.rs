//! `vmlan hub`: flags and config file, then wiring: open the ports and the
//! lease store, build the segment with the hub's host (host_driver.rs), serve
//! DNS to the host side (dns_io.rs), run the timers, report stats.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use vmlan_host::config::{self, HostConfig};
use vmlan_host::dns::config as dns_config;
use vmlan_host::leases::LeaseDb;
use vmlan_host::Host;
use vmlan_hub::port::dgram::{self, DgramAddr};
use vmlan_hub::port::stream::{self, StreamAddr};
use vmlan_hub::port::vhost_user;
use vmlan_hub::port::vxlan::{self, VxlanConfig};
use vmlan_hub::port::{mcast, tap};
use vmlan_hub::{Segment, Switch};
use vmlan_store::LeaseStore;

use crate::host_driver::Driven;

const EXAMPLES: &str = "\
Example (the Yomi/Salt layout: two reserved nodes and a pool, on QEMU's multicast segment):
  vmlan hub --mcast 230.0.0.1:1234 --addr 10.0.3.1/24 \\
    --dhcp-range 10.0.3.100,10.0.3.200 --dhcp-option option:router,10.0.3.101 \\
    --dhcp-host 00:00:00:11:11:11,10.0.3.101,master \\
    --dhcp-host 00:00:00:22:22:22,10.0.3.102,worker1 \\
    --host-record master,10.0.3.101 --domain cluster \\
    --dns-listen 127.0.0.1:5353 --leasefile ./leases
QEMU side, per guest, any of (all on one segment):
  -netdev socket,id=vmlan,mcast=230.0.0.1:1234,localaddr=127.0.0.1        (with --mcast)
  -netdev stream,id=vmlan,server=off,addr.type=unix,addr.path=PATH,reconnect-ms=1000  (--stream unix:PATH)
  -netdev socket,id=vmlan,connect=127.0.0.1:5555                         (--stream tcp:127.0.0.1:5555)
  -netdev dgram,id=vmlan,local.type=unix,local.path=VM.sock,remote.type=unix,remote.path=PATH  (--dgram unix:PATH)
  -device virtio-net-pci,netdev=vmlan,mac=00:00:00:11:11:11
vhost-user (guest memory shared, no root, no hugepages; SIZE equal to -m):
  -object memory-backend-memfd,id=mem,size=SIZE,share=on -numa node,memdev=mem
  -chardev socket,id=vhu,path=PATH,reconnect-ms=1000                     (--vhost-user PATH)
  -chardev socket,id=vhu,path=PATH,server=on,wait=off                    (--vhost-user-connect PATH)
  -netdev vhost-user,id=vmlan,chardev=vhu -device virtio-net-pci,netdev=vmlan,mac=00:00:00:11:11:11

One segment over several machines (VXLAN, RFC 7348; one hub is the DHCP/DNS authority,
the others run --no-host), and the Linux kernel's side of the same segment:
  vmlan hub --no-host --stream unix:PATH --vxlan vni=42,local=10.99.0.2,peer=10.99.0.1
  ip link add vx0 type vxlan id 42 dstport 4789 local 10.99.0.3 remote 10.99.0.1 dev eth0

Every flag also reads --flag=value. Repeatable flags add up with the config file's lists.
RUST_LOG sets the log level (default info: one line per lease granted).
SIGUSR1 prints per-port counters and the MAC table. SIGHUP re-reads --addn-hosts,
--hostsdir, --dhcp-hostsfile and --dhcp-hostsdir and clears the DNS cache.";

/// Flags of `vmlan hub`. Each is also a key of the `--config` TOML file, spelled
/// the same without the dashes (`dhcp-range = ["10.0.3.100,10.0.3.200"]`).
#[derive(Args, Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
#[command(after_help = EXAMPLES)]
pub struct HubArgs {
    /// Read settings from this TOML file; flags given on the command line win
    /// over its values, and add to its lists. Example: --config hub.toml
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Read settings from a dnsmasq configuration file (dnsmasq's -C,
    /// --conf-file): one option per line, its long name without `--`
    /// (`dhcp-range=10.0.3.100,10.0.3.200`, a bare `log-dhcp`), `#`
    /// comments, `conf-file=` and `conf-dir=` lines. vmlan's flags of the
    /// same names read the values; dnsmasq options vmlan lacks are refused
    /// naming FILE:LINE, and a few about kernel interfaces and daemon mode
    /// (interface, except-interface, bind-interfaces, bind-dynamic,
    /// listen-address, no-daemon, keep-in-foreground) are skipped with a
    /// warning. Flags on the command line win over its values, and its
    /// values over --config's; lists add up. Repeatable.
    /// Example: --conf-file examples/yomi-dnsmasq.conf
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    conf_file: Vec<PathBuf>,

    /// Join QEMU's multicast segment GROUP:PORT (`-netdev socket,mcast=` or
    /// `dgram` with an inet multicast remote). Safe by construction: the hub
    /// joins and sends on loopback only (IP_MULTICAST_IF and membership on
    /// 127.0.0.1), sends with multicast TTL 0 and IP_MULTICAST_ALL off, so its
    /// traffic never reaches a real network. Repeatable.
    /// Example: --mcast 230.0.0.1:1234
    #[arg(long, value_name = "GROUP:PORT")]
    mcast: Vec<String>,

    /// Listen for QEMU stream clients, any number of them, each its own switch
    /// port: `-netdev stream,server=off,addr.type=unix,addr.path=PATH` (QEMU 7.2+)
    /// or `-netdev socket,connect=HOST:PORT`. Framing: 4-byte big-endian length,
    /// then the frame. Clients with `reconnect-ms=` come back after a hub restart.
    /// Repeatable. Example: --stream unix:/run/user/1000/vmlan.sock --stream tcp:127.0.0.1:5555
    #[arg(long, value_name = "unix:PATH|tcp:HOST:PORT")]
    stream: Vec<String>,

    /// Dial a QEMU that listens (`-netdev stream,server=on,...` or
    /// `-netdev socket,listen=HOST:PORT`), and dial again with backoff (100 ms up
    /// to 5 s) whenever it is not there. Repeatable. Example: --connect tcp:127.0.0.1:7001
    #[arg(long, value_name = "unix:PATH|tcp:HOST:PORT")]
    connect: Vec<String>,

    /// Serve one QEMU guest's virtio-net over vhost-user on this unix socket
    /// (the hub listens; QEMU: `-chardev socket,id=c,path=PATH,reconnect-ms=1000
    /// -netdev vhost-user,id=n,chardev=c`, with the guest's memory shared:
    /// `-object memory-backend-memfd,id=mem,size=SIZE,share=on -numa node,memdev=mem`).
    /// Frames go through shared memory, never the kernel. One VM per socket;
    /// when it goes away the hub listens again. No offloads are offered.
    /// Repeatable. Example: --vhost-user /run/user/1000/vm1.vhost
    #[arg(long, value_name = "[unix:]PATH")]
    vhost_user: Vec<String>,

    /// Dial a QEMU guest's vhost-user socket that QEMU listens on
    /// (`-chardev socket,id=c,path=PATH,server=on,wait=off`), and dial again
    /// with backoff (100 ms up to 1 s) whenever it is not there: the mode that
    /// survives restarts of the hub and of the guest. Repeatable.
    /// Example: --vhost-user-connect /run/user/1000/vm1.vhost
    #[arg(long, value_name = "[unix:]PATH")]
    vhost_user_connect: Vec<String>,

    /// Bind one datagram socket that serves many QEMU peers, each learned by its
    /// source address: `-netdev dgram,local.type=unix,local.path=VM.sock,remote.type=unix,remote.path=PATH`
    /// or `-netdev socket,udp=HOST:PORT,localaddr=127.0.0.1:VMPORT`. Repeatable.
    /// Example: --dgram unix:/tmp/vmlan.dgram --dgram udp:127.0.0.1:6000
    #[arg(long, value_name = "unix:PATH|udp:HOST:PORT")]
    dgram: Vec<String>,

    /// Bridge the segment to this host tap (IFF_TAP|IFF_NO_PI), so the host reaches
    /// the VMs. Create it once for your user, no root needed afterwards:
    /// `ip tuntap add dev NAME mode tap user $USER; ip link set NAME up`. With
    /// CAP_NET_ADMIN the hub creates it and brings it up itself. Repeatable.
    /// Example: --tap vmlan0
    #[arg(long, value_name = "NAME")]
    tap: Vec<String>,

    /// Stretch the segment over IP to other VTEPs (other hubs, Linux `vxlan`
    /// devices, Open vSwitch) with VXLAN (RFC 7348), unprivileged:
    /// vni=N,local=ADDR[:PORT],peer=ADDR[,peer=ADDR...][,group=MCAST,dev=IFACE][,port=P][,mtu=M].
    /// Packets are received on local= (port default 4789) and sent to each
    /// peer's port= (default 4789, the IANA port; Linux's `ip link add ...
    /// type vxlan` defaults to 8472 unless given `dstport 4789`). Broadcast and
    /// unknown unicast go to every peer (and to group= on dev= only when given);
    /// learned MACs go to their VTEP; a frame from a VTEP never goes to another.
    /// Only packets from a peer (or the group) are accepted; others, other VNIs
    /// and malformed packets are dropped and counted. mtu= is the underlay MTU
    /// (default 1500): longer frames are dropped, counted, never fragmented, and
    /// the hub advertises mtu - 50 to guests (DHCP option 26, RA MTU) unless
    /// --dhcp-option mtu says otherwise. Repeatable.
    /// Example: --vxlan vni=42,local=10.99.0.1,peer=10.99.0.2
    #[arg(long, value_name = "vni=N,local=ADDR,peer=ADDR")]
    vxlan: Vec<String>,

    /// The hub's own IPv4 address on the segment and the segment's prefix: the
    /// DHCP server, DNS server and, unless --dhcp-option router says otherwise,
    /// the router it hands out. Required, unless --no-host. Example: --addr 10.0.3.1/24
    #[arg(long, value_name = "IP/PREFIX")]
    addr: Option<String>,

    /// Run as a pure switch, with the hub's own host off: no ARP, ICMP, DHCP,
    /// DHCPv6, RA or DNS answers on the segment (--addr then optional), so
    /// that one hub of a segment stretched with --vxlan is its only authority.
    /// --dns-listen still serves the machine's side. Example: --no-host
    #[arg(long)]
    no_host: bool,

    /// The hub's own MAC address. Default: 02:76:6d followed by the last three
    /// bytes of --addr (locally administered, stable). Example: --mac 02:00:00:00:00:01
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,

    /// A dynamic address pool, as dnsmasq: START,END[,NETMASK][,LEASETIME]; lease
    /// time in seconds or with s/m/h/d/w, or `infinite` (default 1h). IPv6, as
    /// dnsmasq: START[,END][,MODE][,PREFIXLEN][,LEASETIME] (prefix length
    /// default 64), MODE one of ra-only, slaac, ra-stateless, ra-names, or none
    /// (stateful DHCPv6); stateful and slaac ranges are DHCPv6 pools, and
    /// ra-stateless answers DHCPv6 information requests; the hub takes the
    /// address with its MAC's interface identifier in the prefix, and
    /// advertises the prefix with --enable-ra. Repeatable.
    /// Example: --dhcp-range 10.0.3.100,10.0.3.200,12h --dhcp-range 1234::,ra-only
    #[arg(long, value_name = "START,END[,MASK][,TIME]")]
    dhcp_range: Vec<String>,

    /// Send IPv6 router advertisements, as dnsmasq's --enable-ra: one prefix
    /// per IPv6 --dhcp-range (its mode sets the A, M and O flags), the hub's
    /// link-local address as DNS server (RDNSS), --domain as search domain
    /// (DNSSL), the MTU (--dhcp-option mtu, else 1500); at start, then every
    /// 200 to 600 s, and in answer to router solicitations. The router lifetime
    /// is 1800 s when the hub is the IPv4 router it hands out, else 0 (no
    /// default route through a hub that is no way out). Example: --enable-ra
    #[arg(long)]
    enable_ra: bool,

    /// A reservation, as dnsmasq: [MAC][,id:DUID][,IP][,[IPv6]][,NAME][,LEASETIME].
    /// The MAC always gets IP and is told its hostname NAME; NAME resolves in
    /// DNS. For DHCPv6: [IPv6] (in brackets) is leased to the client matched by
    /// id:DUID (hex bytes with colons), else by MAC, and NAME goes with its
    /// DHCPv6 leases (AAAA). Repeatable.
    /// Example: --dhcp-host 00:00:00:11:11:11,10.0.3.101,[1234::5],master
    #[arg(long, value_name = "MAC,IP,NAME")]
    dhcp_host: Vec<String>,

    /// A DHCP option, as dnsmasq: CODE,VALUE[,VALUE...] or option:NAME,VALUE...
    /// (names: router, dns-server, domain-name, domain-search, mtu, ntp-server,
    /// netmask, broadcast, hostname, root-path, tftp-server, bootfile-name, ...).
    /// Overrides the hub's default for that option; with no value (`3`,
    /// `option:router`), sends no such option at all, as dnsmasq. Repeatable.
    /// Example: --dhcp-option option:router,10.0.3.101 (or --dhcp-option 3: no router)
    #[arg(long, value_name = "OPT,VALUE")]
    dhcp_option: Vec<String>,

    /// A DNS host record, as dnsmasq: NAME[,NAME...],[IPv4][,IPv6][,TTL].
    /// Gives A/AAAA records for every name and a PTR for the IPv4 address. Repeatable.
    /// Example: --host-record master,10.0.3.101
    #[arg(long, value_name = "NAMES,IP")]
    host_record: Vec<String>,

    /// Hosts files, as dnsmasq: `IP NAME [ALIAS...]` per line, `#` comments;
    /// A/AAAA for every name, PTR to the first. Re-read on SIGHUP; a bad line
    /// is logged (FILE:LINE) and skipped. Repeatable. Example: --addn-hosts ./hosts
    #[arg(long, value_name = "FILE")]
    addn_hosts: Vec<PathBuf>,

    /// Every file in DIR is an --addn-hosts file (names starting with `.` or
    /// ending in `~` skipped); re-read on SIGHUP. Repeatable. Example: --hostsdir ./hosts.d
    #[arg(long, value_name = "DIR")]
    hostsdir: Vec<PathBuf>,

    /// Reservations, as dnsmasq: one --dhcp-host value per line (no
    /// `dhcp-host=`), `#` comments, with [IPv6] and id:DUID as --dhcp-host.
    /// Re-read on SIGHUP: a live lease that conflicts runs until its client's
    /// next exchange. Repeatable. Example: --dhcp-hostsfile ./dhcp-hosts
    #[arg(long, value_name = "FILE")]
    dhcp_hostsfile: Vec<PathBuf>,

    /// Every file in DIR is a --dhcp-hostsfile; re-read on SIGHUP.
    /// Repeatable. Example: --dhcp-hostsdir ./dhcp-hosts.d
    #[arg(long, value_name = "DIR")]
    dhcp_hostsdir: Vec<PathBuf>,

    /// Run this program on lease changes, as dnsmasq: `PATH add|old|del MAC IP
    /// [HOSTNAME]` (DHCPv6: the client DUID for MAC) with DNSMASQ_DOMAIN,
    /// DNSMASQ_LEASE_EXPIRES, DNSMASQ_TIME_REMAINING, DNSMASQ_CLIENT_ID,
    /// DNSMASQ_IAID, DNSMASQ_SERVER_DUID; `old` for each lease restored at
    /// start. One run at a time, in order, never holding up the segment (at
    /// most 1024 waiting; more are dropped and logged). Example: --dhcp-script ./on-lease.sh
    #[arg(long, value_name = "PATH")]
    dhcp_script: Option<PathBuf>,

    /// Log every DHCP and DHCPv6 message in and out (type, address, MAC,
    /// name, xid, option codes) at info level, as dnsmasq. Example: --log-dhcp
    #[arg(long)]
    log_dhcp: bool,

    /// Log every DNS query (`query[A] NAME from IP`), where it went and its
    /// answer (`config|cached|reply NAME is DATA`) at info level, as dnsmasq.
    /// Example: --log-queries
    #[arg(long)]
    log_queries: bool,

    /// The local domain, as dnsmasq: handed out in DHCP option 15, and every
    /// single-label name also resolves as NAME.DOMAIN. Example: --domain cluster
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,

    /// Also serve DNS to the host on this address, over UDP and TCP (RFC 1035
    /// section 4.2.2: many queries per connection, closed after 10 s idle).
    /// IPv4 or IPv6 (in brackets: [::1]:5353). Repeatable.
    /// Example: --dns-listen 127.0.0.1:5353 (then: dig @127.0.0.1 -p 5353 master)
    #[arg(long, value_name = "ADDR:PORT")]
    dns_listen: Vec<String>,

    /// A CNAME, as dnsmasq: ALIAS[,ALIAS...],TARGET[,TTL]. The target must be a
    /// local name (a --host-record, --dhcp-host or --cname name, or a DHCP client's
    /// name in --domain); answers carry the target's records. Repeatable.
    /// Example: --cname www,master
    #[arg(long, value_name = "ALIAS,TARGET")]
    cname: Vec<String>,

    /// An SRV record (RFC 2782), as dnsmasq:
    /// _service._prot.[domain],[target[,port[,priority[,weight]]]] (port 1,
    /// priority and weight 0 by default; --domain appended to a bare
    /// _service._prot). Repeatable. Example: --srv-host _salt._tcp,master,4506
    #[arg(long, value_name = "NAME,TARGET,PORT")]
    srv_host: Vec<String>,

    /// A PTR record, as dnsmasq: REVERSE-NAME,TARGET (an in-addr.arpa or
    /// ip6.arpa name); it wins over the PTRs host names give the address
    /// (RFC 1035 section 3.3.12). Repeatable.
    /// Example: --ptr-record 50.3.0.10.in-addr.arpa,printer.example
    #[arg(long, value_name = "NAME,TARGET")]
    ptr_record: Vec<String>,

    /// As dnsmasq: /DOMAIN[/DOMAIN...]/[IP] answers IP (IPv4 or IPv6) for the
    /// domains and every name under them; `#` as IP: the null address; no IP:
    /// NXDOMAIN; `#` as DOMAIN: every name. Host records and leases win; other
    /// query types are forwarded (dnsmasq 2.86+). Repeatable.
    /// Example: --address /ads.test/127.0.0.1
    #[arg(long, value_name = "/DOMAIN/IP")]
    address: Vec<String>,

    /// An upstream DNS server for names that are not local, as dnsmasq:
    /// IP[#PORT], or /DOMAIN[/DOMAIN...]/IP[#PORT] for those domains only. Adds
    /// to the nameservers of /etc/resolv.conf unless --no-resolv. When the
    /// servers fail (refused, no route: at once) or stay silent (3 s), the
    /// client gets SERVFAIL. Repeatable.
    /// Example: --server 192.0.2.53 --server /corp.test/10.1.1.1#5353
    #[arg(long, value_name = "IP[#PORT]")]
    server: Vec<String>,

    /// Domains never forwarded, as dnsmasq: /DOMAIN[/DOMAIN...]/; unknown names
    /// under them get NXDOMAIN from the hub. Repeatable. Example: --local /internal/
    #[arg(long, value_name = "/DOMAIN/")]
    local: Vec<String>,

    /// Do not read /etc/resolv.conf (dnsmasq's --no-resolv): only --server
    /// servers; without any, names that are not local get REFUSED.
    /// Example: --no-resolv
    #[arg(long)]
    no_resolv: bool,

    /// Take the upstream servers from this file's nameserver lines instead of
    /// /etc/resolv.conf (read once, at start). Example: --resolv-file /etc/resolv.upstream
    #[arg(long, value_name = "FILE")]
    resolv_file: Option<PathBuf>,

    /// Most DNS queries waiting for an upstream answer at once (default 150, as
    /// dnsmasq; at most 4096); more are dropped. Example: --dns-forward-max 500
    #[arg(long, value_name = "QUERIES")]
    dns_forward_max: Option<usize>,

    /// Keep leases in this file, in dnsmasq's leases-file format, rewritten
    /// atomically on every change and read back at start, so leases survive a
    /// restart, and so does the address each client last had (a released or
    /// expired lease stays, with its past expiry). Alias: --dhcp-leasefile.
    /// Example: --leasefile ./leases
    #[arg(long, alias = "dhcp-leasefile", value_name = "FILE")]
    #[serde(alias = "dhcp-leasefile")]
    leasefile: Option<PathBuf>,

    /// PXE boot, as dnsmasq: FILE[,SERVERNAME[,SERVERADDR]] fills the `file`,
    /// `sname` and `siaddr` fields of replies (SERVERADDR defaults to the hub).
    /// Example: --dhcp-boot pxelinux.0
    #[arg(long, value_name = "FILE[,NAME[,ADDR]]")]
    dhcp_boot: Option<String>,

    /// As dnsmasq: answer REQUESTs from clients that have no lease here (ACK or
    /// NAK) instead of staying silent so another server may answer; use it when
    /// the hub is the only DHCP server on the segment. Example: --dhcp-authoritative
    #[arg(long)]
    dhcp_authoritative: bool,

    /// As dnsmasq: answer a DHCPv6 SOLICIT carrying the Rapid Commit option
    /// with a REPLY and the lease at once (RFC 8415 section 18.3.1), skipping
    /// ADVERTISE and REQUEST; without it such a SOLICIT gets an ADVERTISE.
    /// Example: --dhcp-rapid-commit
    #[arg(long)]
    dhcp_rapid_commit: bool,

    /// Log per-port counters and the MAC table every SECONDS (0: only on SIGUSR1).
    /// Example: --stats 10
    #[arg(long, value_name = "SECONDS")]
    stats: Option<u64>,

    /// Serve the runtime HTTP/1.1 JSON API on this unix socket (mode 0600):
    /// leases, ports, MAC table, DNS records (read and add), gvproxy's routes;
    /// `curl --unix-socket PATH http://vmlan/openapi.json` describes them
    /// (README, "Runtime API"). Example: --api unix:/run/user/1000/vmlan.api
    #[arg(long, value_name = "unix:PATH")]
    api: Option<String>,

    /// Keep what the --api adds (reservations, DNS records, port forwards) in
    /// FILE, in dnsmasq's config syntax (dhcp-host=, host-record=, cname=,
    /// srv-host=, ptr-record=, and expose= as --expose): read at start (a bad
    /// line stops the hub with FILE:LINE; a forward whose address is taken is
    /// logged and skipped), rewritten atomically before each change is
    /// answered. Without it, API changes last until the hub stops; without
    /// --api, FILE is only read. Example: --api-state ./api-state.conf
    #[arg(long, value_name = "FILE")]
    api_state: Option<PathBuf>,

    /// Share the --api socket with this group (name or number): mode 0660,
    /// owned by the group. Example: --api-group vmlan
    #[arg(long, value_name = "GROUP")]
    api_group: Option<String>,

    /// gvproxy's notification socket: send `ready`, `connection_established`
    /// and `connection_closed` (with the guest's MAC) as JSON lines, one
    /// connection each, to the program listening on this unix socket
    /// (README, "Runtime API"). Example: --notification unix:/run/user/1000/vmlan.notify
    #[arg(long, value_name = "unix:PATH")]
    notification: Option<String>,
    /// Forward a port of this machine into a guest, as gvproxy's forwarder:
    /// [tcp:|udp:]LISTEN_ADDR:PORT=GUEST_IP:PORT (TCP by default; a bare
    /// PORT listens on 127.0.0.1). Each TCP client becomes a connection from
    /// the hub's --addr (an ephemeral port) to the guest; each UDP client a
    /// flow of its own. LISTEN_ADDR must be one of this machine's addresses,
    /// GUEST_IP inside the --addr prefix; not with --no-host. Also at run
    /// time through the API (/services/forwarder/expose). Repeatable.
    /// Example: --expose tcp:127.0.0.1:2222=10.0.3.101:22
    #[arg(long, value_name = "[tcp:|udp:]ADDR:PORT=GUEST:PORT")]
    expose: Vec<String>,

    /// Check the flags and config file, print "vmlan: configuration OK" and exit
    /// without opening any port (dnsmasq's --test). Example: --config hub.toml --test
    #[arg(long)]
    #[serde(skip)]
    test: bool,
}

impl HubArgs {
    /// Merges the config file and the dnsmasq conf files (if any) under the
    /// command-line flags: flags win over the conf files, which win over the
    /// config file; lists add up in that order (config, conf files, flags).
    fn merged(self) -> Result<HubArgs> {
        let mut file = HubArgs::default();
        if let Some(path) = &self.config {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("--config {}: cannot read", path.display()))?;
            file = toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?;
        }
        if !self.conf_file.is_empty() {
            use clap::{Args, FromArgMatches};
            let cmd = HubArgs::augment_args(clap::Command::new("hub"));
            let conf = crate::conf_file::read(&self.conf_file, &cmd)?;
            for w in &conf.warnings {
                tracing::warn!("{w}");
            }
            let matches = cmd.no_binary_name(true).try_get_matches_from(&conf.args)?;
            file = HubArgs::from_arg_matches(&matches)?.over(file);
        }
        Ok(self.over(file))
    }

    /// `self`'s values over `file`'s: `self`'s single values win, lists are
    /// `file`'s then `self`'s, flags are on when either has them.
    fn over(self, file: HubArgs) -> HubArgs {
        let cat = |mut a: Vec<String>, b: Vec<String>| {
            a.extend(b);
            a
        };
        HubArgs {
            config: self.config,
            conf_file: self.conf_file,
            mcast: cat(file.mcast, self.mcast),
            stream: cat(file.stream, self.stream),
            connect: cat(file.connect, self.connect),
            dgram: cat(file.dgram, self.dgram),
            vhost_user: cat(file.vhost_user, self.vhost_user),
            vhost_user_connect: cat(file.vhost_user_connect, self.vhost_user_connect),
            tap: cat(file.tap, self.tap),
            vxlan: cat(file.vxlan, self.vxlan),
            no_host: self.no_host || file.no_host,
            addr: self.addr.or(file.addr),
            mac: self.mac.or(file.mac),
            dhcp_range: cat(file.dhcp_range, self.dhcp_range),
            enable_ra: self.enable_ra || file.enable_ra,
            dhcp_host: cat(file.dhcp_host, self.dhcp_host),
            dhcp_option: cat(file.dhcp_option, self.dhcp_option),
            host_record: cat(file.host_record, self.host_record),
            addn_hosts: [file.addn_hosts, self.addn_hosts].concat(),
            hostsdir: [file.hostsdir, self.hostsdir].concat(),
            dhcp_hostsfile: [file.dhcp_hostsfile, self.dhcp_hostsfile].concat(),
            dhcp_hostsdir: [file.dhcp_hostsdir, self.dhcp_hostsdir].concat(),
            dhcp_script: self.dhcp_script.or(file.dhcp_script),
            log_dhcp: self.log_dhcp || file.log_dhcp,
            log_queries: self.log_queries || file.log_queries,
            domain: self.domain.or(file.domain),
            dns_listen: cat(file.dns_listen, self.dns_listen),
            cname: cat(file.cname, self.cname),
            srv_host: cat(file.srv_host, self.srv_host),
            ptr_record: cat(file.ptr_record, self.ptr_record),
            address: cat(file.address, self.address),
            server: cat(file.server, self.server),
            local: cat(file.local, self.local),
            no_resolv: self.no_resolv || file.no_resolv,
            resolv_file: self.resolv_file.or(file.resolv_file),
            dns_forward_max: self.dns_forward_max.or(file.dns_forward_max),
            leasefile: self.leasefile.or(file.leasefile),
            stats: self.stats.or(file.stats),
            api: self.api.or(file.api),
            api_group: self.api_group.or(file.api_group),
            api_state: self.api_state.or(file.api_state),
            notification: self.notification.or(file.notification),
            expose: cat(file.expose, self.expose),
            dhcp_boot: self.dhcp_boot.or(file.dhcp_boot),
            dhcp_authoritative: self.dhcp_authoritative || file.dhcp_authoritative,
            dhcp_rapid_commit: self.dhcp_rapid_commit || file.dhcp_rapid_commit,
            test: self.test,
        }
    }

    /// Parses and validates every setting; errors name the flag.
    fn host_config(&self) -> Result<HostConfig> {
        // With --no-host the host never answers; its address only has to parse.
        let addr = match (&self.addr, self.no_host) {
            (Some(a), _) => a.as_str(),
            (None, true) => "192.0.2.1/24",
            (None, false) => bail!("--addr is required (e.g. --addr 10.0.3.1/24), unless --no-host"),
        };
        let net = config::parse_addr(addr)?;
        let mac = match &self.mac {
            Some(m) => config::parse_mac("--mac", m)?,
            None => config::default_mac(net.addr()),
        };
        let (mut ranges, mut ranges6) = (Vec::new(), Vec::new());
        for r in parse_all(&self.dhcp_range, config::parse_dhcp_range_any)? {
            match r {
                config::AnyRange::V4(r) => ranges.push(r),
                config::AnyRange::V6(r) => ranges6.push(r),
            }
        }
        let mut options = parse_all(&self.dhcp_option, config::parse_dhcp_option)?;
        // VXLAN costs the guests 50 bytes of MTU: advertise the inner MTU
        // (DHCP option 26, and the RA MTU option, which reads it) unless
        // --dhcp-option mtu was given.
        if let Some(inner) = self.vxlan_configs()?.iter().map(VxlanConfig::inner_mtu).min() {
            if !options.iter().any(|o| o.code == 26) {
                options.push(config::DhcpOptionSetting {
                    code: 26,
                    data: inner.to_be_bytes().to_vec(),
                });
            }
        }
        let cfg = HostConfig {
            mac,
            net,
            ranges,
            ranges6,
            enable_ra: self.enable_ra,
            reservations: parse_all(&self.dhcp_host, config::parse_dhcp_host)?,
            options,
            host_records: parse_all(&self.host_record, config::parse_host_record)?,
            domain: self.domain.as_deref().map(config::parse_domain).transpose()?,
            leasefile: self.leasefile.clone(),
            boot: self.dhcp_boot.as_deref().map(config::parse_dhcp_boot).transpose()?,
            authoritative: self.dhcp_authoritative,
            rapid_commit: self.dhcp_rapid_commit,
            dns: self.dns_config()?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The `--vxlan` settings; errors name the flag and the bad part.
    fn vxlan_configs(&self) -> Result<Vec<VxlanConfig>> {
        self.vxlan
            .iter()
            .map(|v| v.parse().map_err(|e| anyhow::anyhow!("--vxlan {v}: {e}")))
            .collect()
    }

    /// The DNS settings. The upstream servers are --server's and, unless
    /// --no-resolv, the nameservers of --resolv-file (default /etc/resolv.conf).
    fn dns_config(&self) -> Result<dns_config::DnsConfig> {
        let mut servers = parse_all(&self.server, |v| dns_config::parse_server("--server", v))?;
        servers.extend(parse_all(&self.local, |v| dns_config::parse_server("--local", v))?);
        if !self.no_resolv {
            let path = self
                .resolv_file
                .as_deref()
                .unwrap_or(std::path::Path::new("/etc/resolv.conf"));
            let rule = |a| dns_config::ServerRule {
                domains: vec![],
                target: dns_config::ServerTarget::Upstream(a),
            };
            match std::fs::read_to_string(path) {
                Ok(text) => servers.extend(dns_config::parse_resolv_conf(&text).into_iter().map(rule)),
                Err(e) if self.resolv_file.is_some() => bail!("--resolv-file {}: cannot read: {e}", path.display()),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "no upstream DNS servers from it"),
            }
        }
        Ok(dns_config::DnsConfig {
            cnames: parse_all(&self.cname, dns_config::parse_cname)?,
            srv_hosts: parse_all(&self.srv_host, dns_config::parse_srv_host)?,
            addresses: parse_all(&self.address, dns_config::parse_address)?,
            ptr_records: parse_all(&self.ptr_record, dns_config::parse_ptr_record)?,
            servers,
            forward_max: self.dns_forward_max.unwrap_or(dns_config::DEFAULT_FORWARD_MAX),
        })
    }
}

/// Parses every value of a repeatable flag; the first error wins.
fn parse_all<T>(values: &[String], parse: fn(&str) -> Result<T, config::ConfigError>) -> Result<Vec<T>> {
    Ok(values.iter().map(|v| parse(v)).collect::<Result<_, _>>()?)
}

fn parse_socket<T: std::str::FromStr>(flag: &str, v: &str, expect: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {v:?}: expected {expect}"))
}

/// Runs the hub until SIGINT or SIGTERM.
pub fn run(args: HubArgs) -> Result<()> {
    let args = args.merged()?;
    let cfg = args.host_config()?;
    let files = crate::dnsops::FileSources {
        addn_hosts: args.addn_hosts.clone(),
        hostsdir: args.hostsdir.clone(),
        dhcp_hostsfile: args.dhcp_hostsfile.clone(),
        dhcp_hostsdir: args.dhcp_hostsdir.clone(),
    };
    let (file_records, file_reservations) = files.load(&cfg, true)?;
    let groups: Vec<SocketAddrV4> = args
        .mcast
        .iter()
        .map(|v| parse_socket("--mcast", v, "a multicast GROUP:PORT such as 230.0.0.1:1234"))
        .collect::<Result<_>>()?;
    if let Some(g) = groups.iter().find(|g| !g.ip().is_multicast()) {
        bail!("--mcast {g}: {} is not an IPv4 multicast address (224.0.0.0/4)", g.ip());
    }
    let parse_addrs = |flag: &str, values: &[String]| -> Result<Vec<StreamAddr>> {
        values
            .iter()
            .map(|v| v.parse().map_err(|e| anyhow::anyhow!("{flag} {e}")))
            .collect()
    };
    let streams = parse_addrs("--stream", &args.stream)?;
    let connects = parse_addrs("--connect", &args.connect)?;
    let dgrams: Vec<DgramAddr> = args
        .dgram
        .iter()
        .map(|v| v.parse().map_err(|e| anyhow::anyhow!("--dgram {e}")))
        .collect::<Result<_>>()?;
    if let Some(t) = args.tap.iter().find(|t| t.is_empty() || t.len() > 15) {
        bail!("--tap {t:?}: an interface name is 1 to 15 characters");
    }
    let vxlans = args.vxlan_configs()?;
    let vhost_path = |flag: &str, v: &String| -> Result<PathBuf> {
        let p = v.strip_prefix("unix:").unwrap_or(v);
        if p.is_empty() || p.len() > 107 {
            bail!("{flag} {v:?}: a unix socket path is 1 to 107 bytes");
        }
        Ok(PathBuf::from(p))
    };
    let vhost_listens: Vec<PathBuf> = args
        .vhost_user
        .iter()
        .map(|v| vhost_path("--vhost-user", v))
        .collect::<Result<_>>()?;
    let vhost_dials: Vec<PathBuf> = args
        .vhost_user_connect
        .iter()
        .map(|v| vhost_path("--vhost-user-connect", v))
        .collect::<Result<_>>()?;
    if groups.is_empty()
        && streams.is_empty()
        && connects.is_empty()
        && dgrams.is_empty()
        && args.tap.is_empty()
        && vhost_listens.is_empty()
        && vhost_dials.is_empty()
        && vxlans.is_empty()
    {
        bail!("no port to serve: give at least one of --mcast, --stream, --connect, --dgram, --tap, --vhost-user, --vhost-user-connect, --vxlan");
    }
    let dns_listen: Vec<SocketAddr> = args
        .dns_listen
        .iter()
        .map(|v| parse_socket("--dns-listen", v, "ADDR:PORT such as 127.0.0.1:5353 or [::1]:5353"))
        .collect::<Result<_>>()?;
    for r in &cfg.dns.servers {
        if let dns_config::ServerTarget::Upstream(a) = r.target {
            if dns_listen.contains(&a) {
                bail!("--server {a}: the upstream server is this hub's own --dns-listen address (queries would loop)");
            }
        }
    }
    if cfg.enable_ra && cfg.ranges6.is_empty() {
        tracing::warn!("--enable-ra without an IPv6 --dhcp-range: no router advertisements to send");
    }
    let api = args.api.as_deref().map(crate::api::parse_addr).transpose()?;
    if args.api_group.is_some() && api.is_none() {
        bail!("--api-group needs --api");
    }
    // Without --api nothing writes the file: it is read (and applied) only.
    let api_state = match &args.api_state {
        Some(p) => crate::api::ApiState::load(p, &|s| check_expose(&args, &cfg, s))?,
        None => crate::api::ApiState::default(),
    };
    let notification = args
        .notification
        .as_deref()
        .map(crate::notify::parse_addr)
        .transpose()?;
    let events = api.is_some() || notification.is_some();
    let exposes = expose_specs(&args, &cfg)?;
    if let Some(p) = &args.dhcp_script {
        std::fs::metadata(p).with_context(|| format!("--dhcp-script {}: cannot find it", p.display()))?;
    }
    if args.test {
        println!("vmlan: configuration OK");
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (store, leases) = match &cfg.leasefile {
        Some(p) => {
            // Opening reads the file and its journal and writes the file back (compaction).
            let (store, db) = LeaseStore::open(p, now)
                .with_context(|| format!("--leasefile {}: cannot read or write it (or its .journal)", p.display()))?;
            tracing::info!(
                file = %p.display(),
                leases = db.len(),
                remembered = db.remembered_len(),
                "leases loaded"
            );
            (Some(store), db)
        }
        None => (None, LeaseDb::in_memory()),
    };
    let mut leases = leases;
    if args.dhcp_script.is_some() || events {
        leases.record_changes();
    }
    let mut host = Driven::new(Host::new(&cfg, leases, std::time::Instant::now(), now), store);
    host.host.replace_file_entries(file_records, file_reservations);
    crate::api::apply_state(&mut host.host, &api_state);
    host.host.set_logging(args.log_dhcp, args.log_queries);
    if let Some(p) = &args.dhcp_script {
        let runner = crate::dhcp_script::Runner::spawn(p.clone()).context("--dhcp-script: cannot start its thread")?;
        host.set_script(crate::dhcp_script::Tracker::new(cfg.domain.clone()), runner, now);
    }
    if events {
        host.enable_events(now);
    }
    if args.no_host {
        host.switch_off();
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = rt.block_on(async move {
        let seg = Arc::new(Segment::new(host, Switch::default()));
        // Subscribed before any port opens, so the notifications miss none.
        let notify_rx = seg.with_host(|d| d.subscribe());
        // Open every port before serving any, so a bad one stops the hub at start.
        let mut mcasts = Vec::new();
        for g in &groups {
            mcasts.push(mcast::open(*g).with_context(|| format!("--mcast {g}: cannot join the group on loopback"))?);
        }
        let mut listeners = Vec::new();
        for a in &streams {
            listeners.push(stream::Listener::bind(a).with_context(|| format!("--stream {a}: cannot listen"))?);
        }
        let mut dgram_ports = Vec::new();
        for a in &dgrams {
            dgram_ports.push(dgram::bind(a).with_context(|| format!("--dgram {a}: cannot bind"))?);
        }
        let mut vhost_listeners = Vec::new();
        for p in &vhost_listens {
            vhost_listeners.push(
                vhost_user::Listener::bind(p)
                    .with_context(|| format!("--vhost-user {}: cannot listen", p.display()))?,
            );
        }
        let mut vxlan_ports = Vec::new();
        for (v, c) in args.vxlan.iter().zip(&vxlans) {
            vxlan_ports.push(vxlan::open(c).map_err(|e| anyhow::anyhow!("--vxlan {v}: {e}"))?);
        }
        let mut taps = Vec::new();
        for t in &args.tap {
            taps.push(tap::open(t).with_context(|| format!("--tap {t}: cannot open"))?);
        }
        for p in mcasts {
            tokio::spawn(log_exit("mcast", p.run(seg.clone())));
        }
        for l in listeners {
            tokio::spawn(log_exit("stream listener", l.run(seg.clone())));
        }
        for a in connects.clone() {
            tokio::spawn(stream::connect_loop(seg.clone(), a));
        }
        for p in dgram_ports {
            tokio::spawn(log_exit("dgram", p.run(seg.clone())));
        }
        for t in taps {
            tokio::spawn(log_exit("tap", t.run(seg.clone())));
        }
        for v in vxlan_ports {
            tokio::spawn(log_exit("vxlan", v.run(seg.clone())));
        }
        for l in vhost_listeners {
            l.spawn(seg.clone()).context("--vhost-user: cannot start its thread")?;
        }
        for p in vhost_dials.clone() {
            let flag = format!("--vhost-user-connect {}", p.display());
            vhost_user::connect_loop(p, seg.clone()).with_context(|| flag)?;
        }
        crate::dns_io::start(seg.clone(), &dns_listen, &cfg.dns).await?;
        let forwards = crate::forward_io::start(seg.clone(), !args.no_host);
        for (v, s) in args.expose.iter().zip(&exposes) {
            forwards.expose(*s).map_err(|e| anyhow::anyhow!("--expose {v}: {e}"))?;
        }
        if let Some(p) = &args.api_state {
            expose_saved(&forwards, &exposes, &api_state.forwards, p);
        }
        if let Some(p) = &api {
            let opts = crate::api::Options {
                cfg: cfg.clone(),
                state: api_state,
                state_file: args.api_state.clone(),
            };
            crate::api::start(seg.clone(), p, args.api_group.as_deref(), opts)?;
        }
        if let (Some(p), Some(rx)) = (notification, notify_rx) {
            tokio::spawn(crate::notify::run(p, rx));
        }
        // SIGHUP is caught before "hub running" is logged: from then on it re-reads.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let ipv6: Vec<_> = std::iter::once(vmlan_host::ipv6::link_local(cfg.mac))
            .chain(cfg.ranges6.iter().map(|r| vmlan_host::ipv6::address_in(r, cfg.mac)))
            .collect();
        // With --no-host the host's address and MAC are on no wire.
        let (addr, mac) = match args.no_host {
            true => ("none (--no-host)".to_string(), "none".to_string()),
            false => (cfg.net.to_string(), cfg.mac.to_string()),
        };
        tracing::info!(
            addr = %addr, mac = %mac, ipv6 = ?ipv6, ra = cfg.enable_ra && !cfg.ranges6.is_empty(),
            mcast = ?args.mcast, stream = ?args.stream, connect = ?args.connect, dgram = ?args.dgram, tap = ?args.tap,
            vhost_user = ?args.vhost_user, vhost_user_connect = ?args.vhost_user_connect,
            vxlan = ?vxlans.iter().map(ToString::to_string).collect::<Vec<_>>(), host = !args.no_host,
            "hub running"
        );
        let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let every = args.stats.filter(|s| *s > 0).map(Duration::from_secs);
        let mut stats = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
        stats.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(seg.poll_timeout().into()) => seg.handle_timeout(),
                _ = stats.tick(), if every.is_some() => tracing::info!("stats\n{}", seg.report()),
                _ = usr1.recv() => eprint!("{}", seg.report()),
                _ = term.recv() => break,
                _ = hup.recv() => reload(&seg, &files, &cfg),
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        tracing::info!("hub stopping");
        if let Err(e) = seg.with_host(Driven::close) {
            tracing::error!(error = %e, "cannot write the lease file at shutdown");
        }
        Ok(())
    });
    // Stream connections run on the blocking pool, waiting in poll(2); don't wait
    // for them: leases are already on disk, and exiting closes every socket.
    rt.shutdown_background();
    result
}

/// SIGHUP, as dnsmasq: re-reads the hosts and DHCP hosts files (off the
/// segment's lock) and swaps what they give into the host, which also empties
/// its DNS cache; leases and connections stay.
fn reload(seg: &Segment<Driven>, files: &crate::dnsops::FileSources, cfg: &HostConfig) {
    let Ok((records, reservations)) = files.load(cfg, false) else {
        return;
    };
    let (n, m) = (records.len(), reservations.len());
    seg.with_host(|d| d.host.replace_file_entries(records, reservations));
    tracing::info!(
        host_records = n,
        reservations = m,
        "SIGHUP: files re-read, DNS cache cleared"
    );
}

/// The checks of a forward beyond its syntax: the hub has a host (not
/// --no-host) and the guest is inside the --addr prefix. The error says why,
/// without the flag's name.
fn check_expose(args: &HubArgs, cfg: &HostConfig, s: &crate::forward_io::Spec) -> Result<(), String> {
    if args.no_host {
        return Err("needs the hub's host on the segment: it cannot be used with --no-host".into());
    }
    if !vmlan_host::forward::on_segment(cfg.net, s.remote) {
        return Err(format!(
            "{} is not a guest on the segment (not inside --addr {}, or the hub's own address)",
            s.remote, cfg.net
        ));
    }
    Ok(())
}

/// Installs the forwards read from `--api-state` (`file`), after the flags'
/// (`flags`): one on the address and protocol of a flag's is skipped (the
/// flag's stands), one whose address cannot be listened on now (taken by
/// another program, gone from the machine) is skipped; both are logged and
/// stay in the file, to be tried again at the next start.
fn expose_saved(
    forwards: &Arc<crate::forward_io::Forwards>,
    flags: &[crate::forward_io::Spec],
    saved: &[crate::forward_io::Spec],
    file: &std::path::Path,
) {
    for s in saved {
        let line = format!("expose={}", crate::api::state::expose_value(s));
        if flags.iter().any(|f| f.local == s.local && f.protocol == s.protocol) {
            tracing::warn!(
                "--api-state {}: {line}: an --expose flag forwards {} {}; skipped (kept in the file)",
                file.display(),
                s.protocol.name(),
                s.local
            );
            continue;
        }
        if let Err(e) = forwards.expose(*s) {
            tracing::warn!(
                "--api-state {}: {line}: {e}; skipped (kept in the file, tried again at the next start)",
                file.display()
            );
        }
    }
}

/// The `--expose` forwards, checked: each value parses, the guest is inside
/// the --addr prefix, and the hub has a host (not --no-host). Errors name the flag.
fn expose_specs(args: &HubArgs, cfg: &HostConfig) -> Result<Vec<crate::forward_io::Spec>> {
    if args.no_host && !args.expose.is_empty() {
        bail!("--expose needs the hub's host on the segment: it cannot be used with --no-host");
    }
    let mut specs = Vec::new();
    for v in &args.expose {
        let s = crate::forward_io::parse_spec(v).map_err(|e| anyhow::anyhow!("--expose {e}"))?;
        check_expose(args, cfg, &s).map_err(|e| anyhow::anyhow!("--expose {v}: {e}"))?;
        if specs
            .iter()
            .any(|o: &crate::forward_io::Spec| o.local == s.local && o.protocol == s.protocol)
        {
            bail!("--expose {v}: {} {} is exposed twice", s.protocol.name(), s.local);
        }
        specs.push(s);
    }
    Ok(specs)
}

/// Logs why a port's task ended (it only ends on a socket error).
async fn log_exit(kind: &'static str, task: impl std::future::Future<Output = std::io::Result<()>>) {
    if let Err(e) = task.await {
        tracing::error!(kind, error = %e, "port stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config file's `dhcp-option` list goes through the flag's parser:
    /// an option without a value is one the hub leaves out.
    /// The dnsmasq operational keys read from the config file, lists added to the flags'.
    #[test]
    fn config_file_dnsops_keys() {
        let file = "addn-hosts = [\"/a\"]\nhostsdir = [\"/d\"]\ndhcp-hostsfile = [\"/h\"]\n\
                    dhcp-hostsdir = [\"/hd\"]\ndhcp-script = \"/s\"\nlog-dhcp = true\nlog-queries = true\napi-state = \"/st\"\n";
        let dir = std::env::temp_dir().join(format!("vmlan-hubcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hub.toml");
        std::fs::write(&path, file).unwrap();
        let args = HubArgs {
            config: Some(path),
            addn_hosts: vec!["/b".into()],
            ..HubArgs::default()
        }
        .merged()
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(args.addn_hosts, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(args.hostsdir, [PathBuf::from("/d")]);
        assert_eq!(args.dhcp_hostsfile, [PathBuf::from("/h")]);
        assert_eq!(args.dhcp_hostsdir, [PathBuf::from("/hd")]);
        assert_eq!(args.dhcp_script, Some(PathBuf::from("/s")));
        assert!(args.log_dhcp && args.log_queries);
        assert_eq!(args.api_state, Some(PathBuf::from("/st")));
    }

    /// `--conf-file` and `--config` together: command-line flags win over
    /// the conf file, the conf file over the TOML file; lists add up in that
    /// order (TOML, conf files, flags); a repeated --conf-file reads both.
    #[test]
    fn conf_file_with_config_and_flags() {
        let dir = std::env::temp_dir().join(format!("vmlan-hubconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("hub.toml");
        std::fs::write(
            &toml_path,
            "domain = \"from-toml\"\nleasefile = \"t.leases\"\nstats = 5\ndhcp-host = [\"00:00:00:00:00:01,10.0.3.11,a\"]\n",
        )
        .unwrap();
        let conf = dir.join("dnsmasq.conf");
        std::fs::write(
            &conf,
            "domain=from-conf\ndhcp-leasefile=c.leases\ndhcp-host=00:00:00:00:00:02,10.0.3.12,b\nlog-dhcp\n",
        )
        .unwrap();
        let conf2 = dir.join("more.conf");
        std::fs::write(&conf2, "host-record=m,10.0.3.5\n").unwrap();
        let args = HubArgs {
            config: Some(toml_path),
            conf_file: vec![conf, conf2],
            domain: Some("from-flag".into()),
            dhcp_host: vec!["00:00:00:00:00:03,10.0.3.13,c".into()],
            ..HubArgs::default()
        }
        .merged()
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(args.domain.as_deref(), Some("from-flag"));
        assert_eq!(args.leasefile, Some(PathBuf::from("c.leases")));
        assert_eq!(args.stats, Some(5));
        assert!(args.log_dhcp);
        let hosts: Vec<&str> = args.dhcp_host.iter().map(|h| &h[18..]).collect();
        assert_eq!(hosts, ["10.0.3.11,a", "10.0.3.12,b", "10.0.3.13,c"]);
        assert_eq!(args.host_record, ["m,10.0.3.5"]);
    }

    /// `notification` is a config key, as the flag.
    #[test]
    fn config_file_notification_key() {
        let args: HubArgs = toml::from_str("notification = \"unix:/n.sock\"").unwrap();
        assert_eq!(args.notification.as_deref(), Some("unix:/n.sock"));
    }

    /// `expose` is a config file key; the flags' values add to its list;
    /// a guest outside --addr and --no-host are refused naming the flag.
    #[test]
    fn config_file_expose_key() {
        let file: HubArgs =
            toml::from_str("addr = \"10.0.3.1/24\"\nno-resolv = true\nexpose = [\"tcp:127.0.0.1:2222=10.0.3.5:22\"]")
                .unwrap();
        let cfg = file.host_config().unwrap();
        let specs = expose_specs(&file, &cfg).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].remote, "10.0.3.5:22".parse().unwrap());
        let outside: HubArgs =
            toml::from_str("addr = \"10.0.3.1/24\"\nno-resolv = true\nexpose = [\"2222=10.0.4.5:22\"]").unwrap();
        let e = expose_specs(&outside, &cfg).unwrap_err().to_string();
        assert!(e.contains("--expose 2222=10.0.4.5:22"), "{e}");
        let no_host: HubArgs =
            toml::from_str("no-host = true\nno-resolv = true\nexpose = [\"2222=10.0.3.5:22\"]").unwrap();
        let e = expose_specs(&no_host, &cfg).unwrap_err().to_string();
        assert!(e.contains("--expose") && e.contains("--no-host"), "{e}");
    }

    #[test]
    fn config_file_options_without_a_value() {
        let file: HubArgs = toml::from_str(
            r#"
            addr = "10.0.3.1/24"
            no-resolv = true
            dhcp-option = ["3", "option:dns-server", "option:mtu,1400"]
            "#,
        )
        .unwrap();
        let cfg = file.host_config().unwrap();
        let got: Vec<(u8, usize)> = cfg.options.iter().map(|o| (o.code, o.data.len())).collect();
        assert_eq!(got, [(3, 0), (6, 0), (26, 2)]);
        let bad: HubArgs = toml::from_str("addr = \"10.0.3.1/24\"\nno-resolv = true\ndhcp-option = [\"54\"]").unwrap();
        let e = bad.host_config().unwrap_err().to_string();
        assert!(e.contains("--dhcp-option") && e.contains("every reply"), "{e}");
    }

    /// `--dns-forward-max` past the cap (all 16-bit IDs pending hung the hub)
    /// is refused at start, on the command line and as the config file's key,
    /// with a message naming the flag and the key.
    #[test]
    fn dns_forward_max_above_the_cap_is_refused() {
        let file: HubArgs =
            toml::from_str("addr = \"10.0.3.1/24\"\nno-resolv = true\ndns-forward-max = 70000").unwrap();
        let e = file.host_config().unwrap_err().to_string();
        assert!(e.contains("--dns-forward-max") && e.contains("dns-forward-max)"), "{e}");
        assert!(e.contains("4096"), "{e}");
        let ok: HubArgs = toml::from_str("addr = \"10.0.3.1/24\"\nno-resolv = true\ndns-forward-max = 4096").unwrap();
        assert_eq!(ok.host_config().unwrap().dns.forward_max, 4096);
    }

    /// IPv6 ranges sort out from the IPv4 ones; `enable-ra` and `dhcp-rapid-commit` are config keys.
    #[test]
    fn ipv6_ranges_and_enable_ra() {
        let file: HubArgs = toml::from_str(
            r#"
            addr = "10.0.3.1/24"
            no-resolv = true
            enable-ra = true
            dhcp-rapid-commit = true
            dhcp-range = ["10.0.3.100,10.0.3.200", "1234::,ra-only", "fd00::2,fd00::ff,slaac,64,12h"]
            "#,
        )
        .unwrap();
        let cfg = file.host_config().unwrap();
        assert!(cfg.enable_ra && cfg.rapid_commit);
        assert_eq!((cfg.ranges.len(), cfg.ranges6.len()), (1, 2));
        assert_eq!(cfg.ranges6[1].mode, config::RaMode::Slaac);
        let bad: HubArgs =
            toml::from_str("addr = \"10.0.3.1/24\"\nno-resolv = true\ndhcp-range = [\"1234::,ra-sometimes\"]").unwrap();
        let e = bad.host_config().unwrap_err().to_string();
        assert!(e.contains("--dhcp-range") && e.contains("ra-sometimes"), "{e}");
    }

    /// `--vxlan` makes the host advertise the inner MTU (underlay less 50 bytes,
    /// the smallest over the VXLAN ports) in DHCP option 26, which the RA MTU
    /// option reads too, unless `--dhcp-option mtu` is given; a bad `--vxlan`
    /// is refused naming the flag and the part; `--no-host` makes `--addr` optional.
    #[test]
    fn vxlan_mtu_and_no_host() {
        let file: HubArgs = toml::from_str(
            r#"
            addr = "10.0.3.1/24"
            no-resolv = true
            vxlan = ["vni=42,local=10.99.0.1,peer=10.99.0.2", "vni=43,local=10.99.0.1,peer=10.99.0.3,mtu=9000"]
            "#,
        )
        .unwrap();
        let cfg = file.host_config().unwrap();
        let mtu: Vec<&[u8]> = cfg
            .options
            .iter()
            .filter(|o| o.code == 26)
            .map(|o| &o.data[..])
            .collect();
        assert_eq!(mtu, [&1450u16.to_be_bytes()[..]]);
        let ll = vmlan_host::ipv6::link_local(cfg.mac);
        let mut ra = cfg.clone();
        ra.enable_ra = true;
        ra.ranges6 = vec![match config::parse_dhcp_range_any("fd00::,ra-only").unwrap() {
            config::AnyRange::V6(r) => r,
            config::AnyRange::V4(_) => unreachable!(),
        }];
        assert_eq!(vmlan_host::ra::RaConfig::new(&ra, ll).unwrap().mtu, 1450);
        let own: HubArgs = toml::from_str(
            "addr = \"10.0.3.1/24\"\nno-resolv = true\ndhcp-option = [\"option:mtu,1400\"]\nvxlan = [\"vni=1,local=10.99.0.1,peer=10.99.0.2\"]",
        )
        .unwrap();
        let cfg = own.host_config().unwrap();
        let mtu: Vec<&[u8]> = cfg
            .options
            .iter()
            .filter(|o| o.code == 26)
            .map(|o| &o.data[..])
            .collect();
        assert_eq!(mtu, [&1400u16.to_be_bytes()[..]]);
        let bad: HubArgs =
            toml::from_str("addr = \"10.0.3.1/24\"\nno-resolv = true\nvxlan = [\"vni=1,local=10.99.0.1,peer=x\"]")
                .unwrap();
        let e = bad.host_config().unwrap_err().to_string();
        assert!(e.starts_with("--vxlan ") && e.contains("peer=x"), "{e}");
        let no_addr: HubArgs = toml::from_str("no-resolv = true").unwrap();
        assert!(no_addr.host_config().unwrap_err().to_string().contains("--addr"));
        let no_host: HubArgs = toml::from_str("no-resolv = true\nno-host = true").unwrap();
        assert!(no_host.host_config().is_ok());
    }

    /// A DHCPDISCOVER from `mac` as a broadcast Ethernet frame (RFC 2131
    /// section 4.4.1; IPv4 checksum set, UDP checksum 0 as RFC 768 allows).
    fn discover(mac: [u8; 6]) -> Vec<u8> {
        let mut bootp = vec![0u8; 236];
        bootp[..4].copy_from_slice(&[1, 1, 6, 0]);
        bootp[4..8].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        bootp[10] = 0x80; // broadcast flag
        bootp[28..34].copy_from_slice(&mac);
        bootp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
        let udp_len = (8 + bootp.len()) as u16;
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255];
        ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        let sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        let sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!((sum & 0xffff) + (sum >> 16)) as u16).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0, 68, 0, 67]);
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&bootp);
        f
    }

    /// What holds for a hub without --dhcp-range (README, "Stretching a
    /// segment"): it offers nothing to a client it has no reservation for,
    /// and still serves its --dhcp-host reservations; with a range it offers.
    #[test]
    fn without_a_range_only_reservations_are_served() {
        let offers = |toml_text: &str, mac: [u8; 6]| -> usize {
            let args: HubArgs = toml::from_str(toml_text).unwrap();
            let cfg = args.host_config().unwrap();
            let now = std::time::Instant::now();
            let mut host = Host::new(&cfg, LeaseDb::in_memory(), now, 1_000_000);
            let mut out = Vec::new();
            host.handle_frame(now, &discover(mac), &mut out);
            out.iter()
                .filter(|f| f.len() > 42 && f[23] == 17 && f[34..38] == [0, 67, 0, 68])
                .count()
        };
        let base = "addr = \"10.0.3.1/24\"\nno-resolv = true\ndhcp-host = [\"00:00:00:00:00:11,10.0.3.11,r\"]\n";
        let stranger = [0, 0, 0, 0, 0, 0x22];
        let reserved = [0, 0, 0, 0, 0, 0x11];
        assert_eq!(offers(base, stranger), 0, "a hub without a range offered to a stranger");
        assert_eq!(offers(base, reserved), 1, "a reservation alone is served");
        let ranged = format!("{base}dhcp-range = [\"10.0.3.100,10.0.3.200\"]\n");
        assert_eq!(offers(&ranged, stranger), 1, "the DISCOVER is well formed");
    }
}
