//! The sets connectivity is made of: ports per protocol, and IPv4 address ranges.

use std::fmt;
use std::net::Ipv4Addr;

/// A set of ports (1–65535), as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    /// No port.
    pub fn none() -> Self {
        PortSet(Vec::new())
    }

    /// Every port.
    pub fn all() -> Self {
        PortSet(vec![(1, u16::MAX)])
    }

    /// The ports `from..=to` (empty when `from > to`; port 0 is no port).
    pub fn range(from: u16, to: u16) -> Self {
        let from = from.max(1);
        if from > to {
            PortSet::none()
        } else {
            PortSet(vec![(from, to)])
        }
    }

    /// One port.
    pub fn one(port: u16) -> Self {
        PortSet::range(port, port)
    }

    /// Whether it holds no port.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether it holds every port.
    pub fn is_all(&self) -> bool {
        self.0 == [(1, u16::MAX)]
    }

    /// Whether it holds `port`.
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(a, b)| a <= port && port <= b)
    }

    /// The ports in either set.
    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut all: Vec<(u16, u16)> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(all.len());
        for (a, b) in all {
            match out.last_mut() {
                Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        PortSet(out)
    }

    /// The ports in both sets.
    pub fn intersection(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a1, b1) = self.0[i];
            let (a2, b2) = other.0[j];
            let (a, b) = (a1.max(a2), b1.min(b2));
            if a <= b {
                out.push((a, b));
            }
            if b1 < b2 {
                i += 1;
            } else {
                j += 1;
            }
        }
        PortSet(out)
    }

    /// The ports in `self` and not in `other`.
    pub fn difference(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        for &(a, b) in &self.0 {
            let mut start = u32::from(a);
            let end = u32::from(b);
            for &(c, d) in &other.0 {
                let (c, d) = (u32::from(c), u32::from(d));
                if d < start || c > end {
                    continue;
                }
                if c > start {
                    out.push((start as u16, (c - 1) as u16));
                }
                start = d + 1;
                if start > end {
                    break;
                }
            }
            if start <= end {
                out.push((start as u16, end as u16));
            }
        }
        PortSet(out)
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// A transport protocol a NetworkPolicy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Protocol {
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
    /// TCP, the default.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// Every protocol, in the order connections are written (alphabetical, as the analyser does).
    pub const ALL: [Protocol; 3] = [Protocol::Sctp, Protocol::Tcp, Protocol::Udp];

    /// The protocol a NetworkPolicy or container port names (`TCP`, `UDP`, `SCTP`).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Sctp => "SCTP",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// A set of connections: the ports allowed for each protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conns([PortSet; 3]);

impl Conns {
    /// No connection.
    pub fn none() -> Self {
        Conns::default()
    }

    /// Every connection.
    pub fn all() -> Self {
        Conns([PortSet::all(), PortSet::all(), PortSet::all()])
    }

    /// `ports` of `protocol`.
    pub fn of(protocol: Protocol, ports: PortSet) -> Self {
        let mut c = Conns::none();
        c.0[protocol.index()] = ports;
        c
    }

    /// The ports allowed for `protocol`.
    pub fn ports(&self, protocol: Protocol) -> &PortSet {
        &self.0[protocol.index()]
    }

    /// Whether it allows nothing.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(PortSet::is_empty)
    }

    /// Whether it allows everything.
    pub fn is_all(&self) -> bool {
        self.0.iter().all(PortSet::is_all)
    }

    fn zip(&self, other: &Conns, f: impl Fn(&PortSet, &PortSet) -> PortSet) -> Conns {
        Conns(std::array::from_fn(|i| f(&self.0[i], &other.0[i])))
    }

    /// What either allows.
    pub fn union(&self, other: &Conns) -> Conns {
        self.zip(other, PortSet::union)
    }

    /// What both allow.
    pub fn intersection(&self, other: &Conns) -> Conns {
        self.zip(other, PortSet::intersection)
    }

    /// What `self` allows and `other` does not.
    pub fn difference(&self, other: &Conns) -> Conns {
        self.zip(other, PortSet::difference)
    }
}

impl fmt::Display for Conns {
    /// As the analyser writes it: `All Connections`, `No Connections`, or protocols in order, each
    /// with its ports (`TCP 80,443,UDP 53`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("All Connections");
        }
        if self.is_empty() {
            return f.write_str("No Connections");
        }
        let mut first = true;
        for p in Protocol::ALL {
            let ports = self.ports(p);
            if ports.is_empty() {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{p} {ports}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Conns {
    type Err = String;

    /// As the analyser writes connections (`All Connections`, `TCP 80,443,UDP 53`), or `all`; a
    /// port without a protocol is TCP's, and a protocol without ports has every port.
    fn from_str(s: &str) -> Result<Conns, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") || s == "All Connections" {
            return Ok(Conns::all());
        }
        if s == "No Connections" {
            return Ok(Conns::none());
        }
        let mut conns = Conns::none();
        let mut protocol = Protocol::Tcp;
        for item in s.split(',').map(str::trim) {
            let ports = match item.split_once(' ') {
                Some((p, ports)) => {
                    protocol = Protocol::parse(&p.to_ascii_uppercase())
                        .ok_or_else(|| format!("{p:?} is not TCP, UDP or SCTP"))?;
                    ports.trim()
                }
                None => match Protocol::parse(&item.to_ascii_uppercase()) {
                    Some(p) => {
                        conns = conns.union(&Conns::of(p, PortSet::all()));
                        continue;
                    }
                    None => item,
                },
            };
            let number = |t: &str| {
                t.parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{t:?} is not a port (1-65535)"))
            };
            let set = match ports.split_once('-') {
                Some((a, b)) => PortSet::range(number(a)?, number(b)?),
                None => PortSet::one(number(ports)?),
            };
            conns = conns.union(&Conns::of(protocol, set));
        }
        Ok(conns)
    }
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange {
    /// The first address.
    pub first: u32,
    /// The last address.
    pub last: u32,
}

impl IpRange {
    /// Every IPv4 address.
    pub const ALL: IpRange = IpRange {
        first: 0,
        last: u32::MAX,
    };

    /// The addresses of a CIDR (`10.0.0.0/8`); `None` for anything else (IPv6 among them).
    pub fn cidr(s: &str) -> Option<IpRange> {
        let (addr, len) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let len: u32 = len.parse().ok()?;
        if len > 32 {
            return None;
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let first = u32::from(addr) & mask;
        Some(IpRange {
            first,
            last: first | !mask,
        })
    }

    /// Whether `other` lies wholly inside it.
    pub fn covers(&self, other: &IpRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            Ipv4Addr::from(self.first),
            Ipv4Addr::from(self.last)
        )
    }
}

/// The IPv4 space cut at every boundary of `ranges`: disjoint ranges covering it all, each either
/// inside or outside every range given.
pub fn cut(ranges: &[IpRange]) -> Vec<IpRange> {
    let mut starts: Vec<u64> = vec![0];
    for r in ranges {
        starts.push(u64::from(r.first));
        starts.push(u64::from(r.last) + 1);
    }
    starts.sort_unstable();
    starts.dedup();
    starts.retain(|&s| s <= u64::from(u32::MAX));
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let next = starts.get(i + 1).copied().unwrap_or(1 << 32);
            IpRange {
                first: s as u32,
                last: (next - 1) as u32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_sets_union_intersect_and_subtract_as_sets() {
        let a = PortSet::range(1, 100).union(&PortSet::range(200, 300));
        let b = PortSet::range(50, 250);
        assert_eq!(a.intersection(&b).to_string(), "50-100,200-250");
        assert_eq!(a.difference(&b).to_string(), "1-49,251-300");
        assert_eq!(b.difference(&a).to_string(), "101-199");
        assert_eq!(
            PortSet::one(80).union(&PortSet::one(81)).to_string(),
            "80-81"
        );
        assert!(PortSet::all().difference(&PortSet::all()).is_empty());
        assert_eq!(
            PortSet::all().difference(&PortSet::one(1)).to_string(),
            "2-65535"
        );
        assert_eq!(
            PortSet::all().difference(&PortSet::one(65535)).to_string(),
            "1-65534"
        );
    }

    #[test]
    fn connections_are_written_as_the_analyser_writes_them() {
        let c = Conns::of(Protocol::Tcp, PortSet::one(8080))
            .union(&Conns::of(Protocol::Udp, PortSet::one(80)))
            .union(&Conns::of(Protocol::Udp, PortSet::range(5000, 6000)));
        assert_eq!(c.to_string(), "TCP 8080,UDP 80,5000-6000");
        assert_eq!(Conns::all().to_string(), "All Connections");
        let most = Conns::all().difference(&Conns::of(Protocol::Sctp, PortSet::one(9003)));
        assert_eq!(
            most.to_string(),
            "SCTP 1-9002,9004-65535,TCP 1-65535,UDP 1-65535"
        );
    }

    #[test]
    fn connections_read_back_as_they_are_written() {
        for text in [
            "TCP 8080,UDP 80,5000-6000",
            "All Connections",
            "SCTP 1-9002,9004-65535,TCP 1-65535,UDP 1-65535",
        ] {
            let c: Conns = text.parse().expect("connections");
            assert_eq!(c.to_string(), text);
        }
        let c: Conns = "8080, udp 53".parse().expect("connections");
        assert_eq!(c.to_string(), "TCP 8080,UDP 53");
        assert_eq!(
            "UDP".parse::<Conns>().map(|c| c.to_string()),
            Ok("UDP 1-65535".into())
        );
        assert!("TCP 0".parse::<Conns>().is_err());
        assert!("ICMP 1".parse::<Conns>().is_err());
    }

    #[test]
    fn the_address_space_is_cut_at_every_boundary() {
        let r = |s| IpRange::cidr(s).expect("a CIDR");
        let parts = cut(&[r("0.0.0.0/0"), r("10.0.0.0/8"), r("172.21.0.0/16")]);
        let shown: Vec<String> = parts.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "0.0.0.0-9.255.255.255",
                "10.0.0.0-10.255.255.255",
                "11.0.0.0-172.20.255.255",
                "172.21.0.0-172.21.255.255",
                "172.22.0.0-255.255.255.255"
            ]
        );
        assert_eq!(cut(&[]), [IpRange::ALL]);
        assert_eq!(IpRange::cidr("fd00::/8"), None);
        assert_eq!(r("192.0.2.7/24").to_string(), "192.0.2.0-192.0.2.255");
    }
}
