//! The command line: flags parsed with getopts, then resolved into a [`Config`].
//!
//! Raw flags ([`Args`]) are kept apart from the resolved configuration, so that the binary
//! can ask for a missing name or port at a terminal before resolving.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use getopts::Options;

pub use crate::config::check_name;
use crate::config::Config;
use crate::wire::Format;

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Print this usage text and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
    /// Run a peer.
    Run(Box<Args>),
    /// `peerchat send IP:PORT TEXT`: send one message and exit.
    Send(Box<Config>, SocketAddr, String),
}

/// A command-line mistake: the message, and the usage text to print after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// One line saying what is wrong.
    pub message: String,
    /// The usage text.
    pub usage: String,
}

/// Flags as given; name and port may still be missing.
#[derive(Debug)]
pub struct Args {
    /// `--name`, if given.
    pub name: Option<String>,
    /// `--port`, if given.
    pub port: Option<u16>,
    config: Config,
    /// Made when first asked for: building it is most of the cost of parsing.
    usage: std::cell::OnceCell<String>,
}

impl Args {
    /// Completes the configuration with a name and port (from the flags or asked for).
    pub fn resolve(self, name: String, port: u16) -> Result<Config, UsageError> {
        check_name(&name).map_err(|message| UsageError {
            message,
            usage: self.usage().to_owned(),
        })?;
        Ok(Config {
            name,
            port,
            ..self.config
        })
    }

    /// The usage text, for errors found after parsing.
    pub fn usage(&self) -> &str {
        self.usage.get_or_init(|| usage(&options()))
    }
}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt(
        "n",
        "name",
        "the name put in every message header (one word)",
        "NAME",
    );
    o.optopt(
        "p",
        "port",
        "TCP port to listen on; 0 lets the system choose",
        "PORT",
    );
    o.optopt(
        "b",
        "bind",
        "address to listen on and send from (default 0.0.0.0)",
        "IP",
    );
    o.optmulti(
        "s",
        "static-peer",
        "greet this peer with connect at start-up (repeatable)",
        "IP:PORT",
    );
    o.optopt(
        "",
        "advertise",
        "IP to claim in headers (default: the address each connection leaves from)",
        "IP",
    );
    o.optopt(
        "",
        "format",
        "header form to send: standard (IP:PORT NAME MSG) or spaced (IP PORT NAME MSG)",
        "FORM",
    );
    o.optflag(
        "",
        "no-timestamps",
        "on a terminal, do not put the time before each line",
    );
    o.optflag(
        "",
        "headless",
        "do not read stdin; run until SIGINT or SIGTERM",
    );
    o.optopt(
        "",
        "max-line",
        "longest line accepted from a peer, in bytes (default 65536)",
        "BYTES",
    );
    o.optopt(
        "",
        "max-unfinished",
        "most bytes of unfinished lines held for all connections together (default 16777216)",
        "BYTES",
    );
    o.optopt(
        "",
        "max-connections",
        "most connections open at once; at the limit the idlest connection of the busiest address makes room, else new ones are closed (default 16384)",
        "N",
    );
    o.optopt(
        "",
        "max-peers-per-ip",
        "most peers heard from one IP address kept in the table (default 16)",
        "N",
    );
    o.optopt(
        "",
        "max-per-ip",
        "most inbound connections open at once from one IP address (default 256)",
        "N",
    );
    o.optopt(
        "",
        "idle-timeout",
        "close an inbound connection silent this long (default 120)",
        "SECS",
    );
    o.optopt(
        "",
        "send-timeout",
        "give up a send that cannot connect and write in this time (default 5)",
        "SECS",
    );
    o.optopt(
        "",
        "probe-interval",
        "check each known peer's liveness this often; 0 = off (default 300)",
        "SECS",
    );
    o.optopt(
        "",
        "probe-failures",
        "failed checks in a row that make a peer unreachable (default 3)",
        "N",
    );
    o.optflag(
        "",
        "json",
        "print events as JSON Lines (schema in the README)",
    );
    o.optopt(
        "",
        "color",
        "colour on the terminal: never, auto (default; honours NO_COLOR) or always",
        "WHEN",
    );
    o.optopt(
        "",
        "state",
        "keep peers and message history in this directory across restarts",
        "DIR",
    );
    o.optflag(
        "",
        "greet-remembered",
        "with --state: greet remembered peers with connect at start-up",
    );
    o.optopt(
        "",
        "history",
        "messages kept for /history and in the state (default 1000)",
        "N",
    );
    o.optflag(
        "",
        "discover",
        "find peerchats on the LAN by UDP multicast, and exchange peer lists with them (off by default)",
    );
    o.optopt(
        "",
        "discover-group",
        "with --discover: the multicast group (default 239.255.77.77:5077)",
        "IP:PORT",
    );
    o.optopt(
        "",
        "discover-interval",
        "with --discover: seconds between announcements (default 600, at least 10)",
        "SECS",
    );
    o.optflag(
        "",
        "discover-broadcast",
        "with --discover: broadcast (255.255.255.255) instead of multicast, on the group's port",
    );
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

fn usage(o: &Options) -> String {
    let brief = "\
Usage: peerchat [-n NAME] [-p PORT] [options]
       peerchat send -n NAME -p PORT IP:PORT TEXT   (one message, then exit 0 or 1)

A peer-to-peer chat peer for lab networks. Type 1/2/3/0 for the menu or /help
for one-line commands; RUST_LOG=debug shows more on stderr.

Example (three peers on one machine):
  peerchat -n alice -p 5001 -b 127.0.0.2
  peerchat -n bob   -p 5002 -b 127.0.0.3 -s 127.0.0.2:5001";
    o.usage(brief)
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, UsageError> {
    let o = options();
    // The usage text is made only when it is shown (building it costs more than the
    // rest of the parsing together).
    let err = |message: String| UsageError {
        message,
        usage: usage(&o),
    };
    let m = o.parse(args).map_err(|e| err(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Parsed::Help(usage(&o)));
    }
    if m.opt_present("version") {
        return Ok(Parsed::Version);
    }
    let send = match m.free.first().map(String::as_str) {
        Some("send") => Some(parse_send_args(&m.free[1..]).map_err(&err)?),
        Some(extra) => return Err(err(format!("unexpected argument {extra:?}"))),
        None => None,
    };
    let mut config = Config::new(String::new());
    if let Some(name) = m.opt_str("name") {
        check_name(&name).map_err(err)?;
    }
    let port = match m.opt_str("port") {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| err(format!("--port {p:?}: a port is a number from 0 to 65535")))?,
        ),
        None => None,
    };
    if let Some(ip) = m.opt_str("bind") {
        config.bind = parse_ip(&ip).map_err(|e| err(format!("--bind {e}")))?;
    }
    if let Some(ip) = m.opt_str("advertise") {
        config.advertise = Some(parse_ip(&ip).map_err(|e| err(format!("--advertise {e}")))?);
    }
    for peer in m.opt_strs("static-peer") {
        let addr = resolve_addr(&peer).map_err(|why| err(format!("--static-peer {why}")))?;
        config.static_peers.push(addr);
    }
    if let Some(f) = m.opt_str("format") {
        config.format = match f.as_str() {
            "standard" => Format::Standard,
            "spaced" => Format::Spaced,
            _ => return Err(err(format!("--format {f:?}: use standard or spaced"))),
        };
    }
    config.headless = m.opt_present("headless");
    config.timestamps = !m.opt_present("no-timestamps");
    config.json = m.opt_present("json");
    if let Some(when) = m.opt_str("color") {
        config.color = match when.as_str() {
            "never" => Some(false),
            "always" => Some(true),
            "auto" => None,
            _ => return Err(err(format!("--color {when:?}: use never, auto or always"))),
        };
    }
    config.state_dir = m.opt_str("state").map(Into::into);
    config.greet_remembered = m.opt_present("greet-remembered");
    if config.greet_remembered && config.state_dir.is_none() {
        return Err(err("--greet-remembered needs --state DIR".into()));
    }
    let group = match m.opt_str("discover-group") {
        Some(g) => {
            let addr: SocketAddr = g.parse().map_err(|_| {
                err(format!(
                    "--discover-group {g:?}: give IP:PORT, e.g. 239.255.77.77:5077"
                ))
            })?;
            let ok = matches!(addr, SocketAddr::V4(v4) if v4.port() != 0 && (v4.ip().is_multicast() || v4.ip().is_broadcast()));
            if !ok {
                return Err(err(format!(
                    "--discover-group {g:?}: an IPv4 multicast group (224.0.0.0/4) with a port"
                )));
            }
            addr
        }
        None => crate::driver::discovery::DEFAULT_GROUP.into(),
    };
    let group = match m.opt_present("discover-broadcast") {
        true => SocketAddr::from((std::net::Ipv4Addr::BROADCAST, group.port())),
        false => group,
    };
    if m.opt_present("discover") {
        config.discover = Some(group);
    } else if ["discover-group", "discover-broadcast", "discover-interval"]
        .iter()
        .any(|o| m.opt_present(o))
    {
        return Err(err(
            "--discover-group, --discover-broadcast and --discover-interval need --discover".into(),
        ));
    }
    let min = crate::node::discovery::MIN_INTERVAL.as_secs();
    if let Some(n) = ranged(&m, "discover-interval", min, 86_400).map_err(&err)? {
        config.discover_interval = Duration::from_secs(n);
    }
    if let Some(n) = ranged(&m, "history", 0, 1_000_000).map_err(&err)? {
        config.history = n as usize;
    }
    let limits = &mut config.limits;
    if let Some(n) = ranged(&m, "max-line", 1024, 1 << 30).map_err(&err)? {
        limits.max_line = n as usize;
    }
    if let Some(n) = ranged(&m, "max-unfinished", 1024, 1 << 40).map_err(&err)? {
        limits.max_unfinished = n as usize;
    }
    if let Some(n) = ranged(&m, "max-connections", 1, 1 << 20).map_err(&err)? {
        limits.max_connections = n as usize;
    }
    if let Some(n) = ranged(&m, "max-peers-per-ip", 1, 65_536).map_err(&err)? {
        limits.max_peers_per_ip = n as usize;
    }
    if let Some(n) = ranged(&m, "max-per-ip", 1, 1 << 20).map_err(&err)? {
        limits.max_per_ip = n as usize;
    }
    if let Some(n) = ranged(&m, "idle-timeout", 1, WEEK).map_err(&err)? {
        limits.idle_timeout = Duration::from_secs(n);
    }
    if let Some(n) = ranged(&m, "send-timeout", 1, WEEK).map_err(&err)? {
        limits.send_timeout = Duration::from_secs(n);
    }
    if let Some(n) = ranged(&m, "probe-interval", 0, WEEK).map_err(&err)? {
        limits.probe_interval = Duration::from_secs(n);
    }
    if let Some(n) = ranged(&m, "probe-failures", 1, 1000).map_err(&err)? {
        limits.probe_failures = n as u32;
    }
    if let Some((dest, text)) = send {
        let (Some(name), Some(port)) = (m.opt_str("name"), port) else {
            return Err(err(
                "peerchat send needs --name and --port: the header tells the receiver who wrote and where to answer".into(),
            ));
        };
        config.name = name;
        config.port = port;
        return Ok(Parsed::Send(Box::new(config), dest, text));
    }
    Ok(Parsed::Run(Box::new(Args {
        name: m.opt_str("name"),
        port,
        config,
        usage: std::cell::OnceCell::new(),
    })))
}

/// `send IP:PORT TEXT...`: the destination and the text (the words joined by spaces).
fn parse_send_args(free: &[String]) -> Result<(SocketAddr, String), String> {
    const USAGE: &str = "usage: peerchat send -n NAME -p PORT IP:PORT TEXT";
    let Some((dest, words)) = free.split_first() else {
        return Err(USAGE.into());
    };
    let dest = resolve_addr(dest).map_err(|why| format!("{why}; {USAGE}"))?;
    let text = words.join(" ");
    if text.trim().is_empty() {
        return Err(format!("nothing to send; {USAGE}"));
    }
    Ok((dest, text))
}

/// An address given on the command line: `IP:PORT`, `[v6]:PORT`, `localhost:PORT`, or a
/// host name, looked up once, now (IPv4 preferred: the lab's peers listen on IPv4).
fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    match crate::node::commands::parse_addr(s) {
        Ok(addr) => Ok(addr),
        Err(why)
            if s.rsplit_once(':')
                .is_none_or(|(_, p)| crate::wire::parse_port(p).is_none()) =>
        {
            Err(format!("{s:?}: {why}"))
        }
        Err(_) => {
            let found: Vec<SocketAddr> = s
                .to_socket_addrs()
                .map_err(|e| format!("{s:?}: cannot find that host ({e})"))?
                .collect();
            found
                .iter()
                .find(|a| a.is_ipv4())
                .or(found.first())
                .copied()
                .ok_or_else(|| format!("{s:?}: that host has no address"))
        }
    }
}

/// Longest accepted timeout or interval, in seconds.
const WEEK: u64 = 7 * 24 * 3600;

/// `--flag N` with `min <= N <= max`.
fn ranged(m: &getopts::Matches, flag: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
    match number(m, flag)? {
        Some(n) if !(min..=max).contains(&n) => Err(format!(
            "--{flag} {n}: expected a number from {min} to {max}"
        )),
        n => Ok(n),
    }
}

fn number(m: &getopts::Matches, flag: &str) -> Result<Option<u64>, String> {
    match m.opt_str(flag) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("--{flag} {v:?}: expected a whole number")),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    crate::node::commands::parse_ip(s)
        .ok_or_else(|| format!("{s:?}: not an IP address (like 127.0.0.2 or ::1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Parsed, UsageError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn full_command_line_resolves() -> Result<(), UsageError> {
        let Parsed::Run(args) = run(&[
            "-n",
            "alice",
            "-p",
            "5001",
            "-b",
            "127.0.0.2",
            "-s",
            "127.0.0.3:5002",
            "-s",
            "[::1]:7",
            "--format",
            "spaced",
            "--headless",
        ])?
        else {
            panic!("expected Run");
        };
        assert_eq!(args.name.as_deref(), Some("alice"));
        assert_eq!(args.port, Some(5001));
        let config = args.resolve("alice".into(), 5001)?;
        assert_eq!(config.static_peers.len(), 2);
        assert_eq!(config.format, Format::Spaced);
        assert!(config.headless);
        Ok(())
    }

    /// The configuration `args` (after `-n a -p 1`) resolve to, or `None` for a usage error.
    fn config_of(args: &[&str]) -> Option<Config> {
        let all: Vec<&str> = ["-n", "a", "-p", "1"].iter().chain(args).copied().collect();
        match run(&all) {
            Ok(Parsed::Run(parsed)) => parsed.resolve("a".into(), 1).ok(),
            _ => None,
        }
    }

    #[test]
    fn discovery_flags() {
        let off = config_of(&[]).expect("valid");
        assert_eq!(off.discover, None, "off by default");
        let on = config_of(&["--discover"]).expect("valid");
        assert_eq!(
            on.discover,
            Some("239.255.77.77:5077".parse().expect("addr"))
        );
        assert_eq!(on.discover_interval, Duration::from_secs(600));
        let custom = config_of(&[
            "--discover",
            "--discover-group",
            "239.255.1.2:6000",
            "--discover-interval",
            "10",
        ])
        .expect("valid");
        assert_eq!(
            custom.discover,
            Some("239.255.1.2:6000".parse().expect("addr"))
        );
        assert_eq!(custom.discover_interval, Duration::from_secs(10));
        let broadcast = config_of(&["--discover", "--discover-broadcast"]).expect("valid");
        assert_eq!(
            broadcast.discover,
            Some("255.255.255.255:5077".parse().expect("addr"))
        );
        for bad in [
            &["--discover-group", "239.255.1.2:6000"][..],
            &["--discover-interval", "60"],
            &["--discover", "--discover-interval", "9"],
            &["--discover", "--discover-group", "127.0.0.1:5077"],
            &["--discover", "--discover-group", "239.255.1.2"],
            &["--discover", "--discover-group", "239.255.1.2:0"],
            &["--discover", "--discover-group", "[ff02::1]:5077"],
        ] {
            assert!(config_of(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for args in [
            &["-p", "70000"][..],
            &["-p", "x"],
            &["-n", "two words"],
            &["-b", "nowhere"],
            &["-s", "127.0.0.2"],
            &["-s", "127.0.0.2:0"],
            &["--format", "xml"],
            &["--bogus"],
            &["stray"],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "0"],
            &["--send-timeout", "18446744073709551615"],
            &["--probe-interval", "18446744073709551615"],
            &["--max-line", "10"],
            &["--probe-failures", "0"],
        ] {
            let got = run(args);
            assert!(got.is_err(), "{args:?}");
            if let Err(e) = got {
                assert!(!e.message.contains('\n'), "one line: {}", e.message);
                assert!(e.usage.contains("Usage: peerchat"));
            }
        }
    }

    #[test]
    fn help_has_an_example_and_version_is_known() {
        match run(&["--help"]) {
            Ok(Parsed::Help(text)) => assert!(text.contains("Example")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(run(&["-V"]), Ok(Parsed::Version)));
    }
}
