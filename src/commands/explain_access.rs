//! `vz explain-access SRC DST [PORT]`: whether SRC may open connections to DST, and which
//! NetworkPolicies decide it — the source's egress and the destination's ingress, each policy with
//! what it allows — as the configuration has them ([`crate::connectivity`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::ExplainAccessArgs;
use crate::connectivity::{self, Conns, Explanation, IpRange, Network, Peer, Protocol, Side};
use crate::engine::Desired;
use crate::error::CommandError;
use crate::output::out;

/// Run `vz explain-access`.
pub fn run(args: &ExplainAccessArgs) -> Result<ExitCode> {
    let desired = Desired::load(args.config.file()?)?;
    let mut network = connectivity::of_steps(&desired.steps)
        .map_err(|e| CommandError::usage(anyhow::anyhow!("{e}")))?;
    for file in &args.workloads {
        let text = std::fs::read_to_string(file).map_err(|e| {
            CommandError::usage(anyhow::anyhow!("cannot read {}: {e}", file.display()))
        })?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| {
            CommandError::usage(anyhow::anyhow!("{}: {e}", file.display())).hint(
                "--workloads takes YAML documents: Deployments, StatefulSets, DaemonSets, Pods",
            )
        })?;
        let more = Network::from_objects(docs.iter().filter(|d| !d.is_null()))
            .map_err(|e| CommandError::usage(anyhow::anyhow!("{}: {e}", file.display())))?;
        network.add_workloads(more.workloads().iter().cloned());
    }
    let (Some(src), Some(dst)) = (&args.src, &args.dst) else {
        return list(&network, args.json);
    };
    let src = peer(&network, src, "SRC")?;
    let dst = peer(&network, dst, "DST")?;
    let port = args.port.as_deref().map(port).transpose()?;
    let e = network.explain(&src, &dst);
    let allowed = match port {
        Some((protocol, n)) => e.allowed.ports(protocol).contains(n),
        None => !e.allowed.is_empty(),
    };
    if args.json {
        let answer = json!({
            "allowed": allowed,
            "port": port.map(|(p, n)| format!("{p} {n}")),
            "explanation": e,
        });
        out(&format!("{}\n", serde_json::to_string_pretty(&answer)?))?;
    } else {
        out(&text(&e, port, allowed))?;
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Every flow the network allows, one a line (`src -> dst conns`), or as JSON.
fn list(network: &Network, json: bool) -> Result<ExitCode> {
    let flows = network.flows();
    if json {
        let flows: Vec<Value> = flows
            .iter()
            .map(|f| json!({"src": f.src.to_string(), "dst": f.dst.to_string(), "conns": f.conns.to_string()}))
            .collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&flows)?))?;
    } else {
        let mut text = String::new();
        for f in &flows {
            let _ = writeln!(text, "{} -> {} {}", f.src, f.dst, f.conns);
        }
        out(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The peer `given` names: a workload by `namespace/name`, or an IPv4 address.
fn peer(network: &Network, given: &str, what: &str) -> Result<Peer> {
    if let Ok(ip) = given.parse::<Ipv4Addr>() {
        let ip = u32::from(ip);
        return Ok(Peer::External {
            addresses: IpRange {
                first: ip,
                last: ip,
            },
        });
    }
    let Some((namespace, name)) = given.split_once('/') else {
        return Err(CommandError::usage(anyhow::anyhow!(
            "{what} `{given}` is neither NAMESPACE/NAME nor an IPv4 address"
        ))
        .into());
    };
    let found: Vec<_> = network
        .workloads()
        .iter()
        .filter(|w| w.namespace == namespace && w.name == name)
        .collect();
    match found.as_slice() {
        [w] => Ok(Peer::Workload {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            kind: w.kind.clone(),
        }),
        [] => {
            let mut known: Vec<String> = network
                .workloads()
                .iter()
                .filter(|w| w.namespace == namespace)
                .map(|w| w.name.clone())
                .collect();
            known.sort();
            let hint = if known.is_empty() {
                format!(
                    "the platform runs nothing in namespace {namespace}; add the workloads it does not run with --workloads FILE"
                )
            } else {
                format!("workloads in {namespace}: {}", known.join(", "))
            };
            Err(CommandError::usage(anyhow::anyhow!(
                "{what}: no workload {given} in the configuration"
            ))
            .hint(hint)
            .into())
        }
        _ => Err(CommandError::usage(anyhow::anyhow!(
            "{what}: {given} names {} workloads ({}): only one is meant",
            found.len(),
            found
                .iter()
                .map(|w| w.kind.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

/// A port as given: `443`, `443/tcp`, `53/udp`.
fn port(given: &str) -> Result<(Protocol, u16)> {
    let (number, protocol) = given.split_once('/').unwrap_or((given, "tcp"));
    let protocol = Protocol::parse(&protocol.to_ascii_uppercase());
    let number = number.parse::<u16>().ok().filter(|n| *n > 0);
    match (protocol, number) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(CommandError::usage(anyhow::anyhow!(
            "PORT `{given}` is not a port: say 443, 443/tcp, 53/udp or 9000/sctp"
        ))
        .into()),
    }
}

fn text(e: &Explanation, port: Option<(Protocol, u16)>, allowed: bool) -> String {
    let mut s = String::new();
    let asked = match port {
        Some((p, n)) => format!(" {p} {n}"),
        None => String::new(),
    };
    let verdict = match (port, allowed) {
        (Some(_), true) => "allowed".to_string(),
        (Some(_), false) => "denied".to_string(),
        (None, true) => format!("allowed: {}", e.allowed),
        (None, false) => "denied: no connection is allowed".to_string(),
    };
    let _ = writeln!(s, "{} -> {}{asked}: {verdict}", e.src, e.dst);
    let wanted = |c: &Conns| match port {
        Some((p, n)) => c.ports(p).contains(n),
        None => !c.is_empty(),
    };
    for side in [&e.egress, &e.ingress] {
        let (whose, other) = match side.direction {
            connectivity::Direction::Egress => (&e.src, &e.dst),
            connectivity::Direction::Ingress => (&e.dst, &e.src),
        };
        let _ = writeln!(s, "  {}", side_line(side, whose, other, &wanted));
    }
    s
}

/// One side of the flow: not restricted, or the policies that select the pod, with what each
/// allows here.
fn side_line(side: &Side, whose: &Peer, other: &Peer, wanted: &dyn Fn(&Conns) -> bool) -> String {
    let dir = side.direction;
    if matches!(whose, Peer::External { .. }) {
        return format!("{dir}: {whose} is outside the cluster: no NetworkPolicy applies there");
    }
    if !side.isolated {
        return format!("{dir} of {whose}: not restricted (no NetworkPolicy selects it for {dir})");
    }
    let deciding: Vec<String> = side
        .policies
        .iter()
        .filter(|d| wanted(&d.allows))
        .map(|d| format!("{} ({})", d.policy, d.allows))
        .collect();
    if deciding.is_empty() {
        let names: Vec<&str> = side.policies.iter().map(|d| d.policy.as_str()).collect();
        match names.as_slice() {
            [one] => format!(
                "{dir} of {whose}: denied: {one} selects it for {dir}, and does not allow this from {other}"
            ),
            many => format!(
                "{dir} of {whose}: denied: {} select it for {dir}, and none allows this from {other}",
                many.join(", ")
            ),
        }
    } else {
        format!("{dir} of {whose}: allowed by {}", deciding.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_with_their_protocol() {
        assert_eq!(port("443").ok(), Some((Protocol::Tcp, 443)));
        assert_eq!(port("53/udp").ok(), Some((Protocol::Udp, 53)));
        assert_eq!(port("9000/SCTP").ok(), Some((Protocol::Sctp, 9000)));
        assert!(port("0").is_err());
        assert!(port("http").is_err());
        assert!(port("80/icmp").is_err());
    }
}
