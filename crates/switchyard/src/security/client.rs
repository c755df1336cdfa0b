//! Who the client is: the connection's peer, or, from a peer in `trusted_proxies`, the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy. A pure function.

use std::net::IpAddr;

use http::header::HeaderValue;
use switchyard_config::Cidr;

/// The client's address for a request from `peer` carrying the `X-Forwarded-For` lines
/// `forwarded_for`, given the `trusted` proxies. From an untrusted peer (or with no trusted
/// proxies) the header is ignored; an entry that is no address stops the walk at the last
/// trusted hop.
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &[Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for line in forwarded_for.rev() {
        let Ok(text) = line.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry.trim()) else {
                return client;
            };
            client = ip;
            if !is_trusted(ip) {
                return ip;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly `[v6]` or with a port (`1.2.3.4:5678`).
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(peer: &str, xff: &[&str], trusted: &[&str]) -> String {
        let lines: Vec<HeaderValue> = xff
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        let trusted: Vec<Cidr> = trusted.iter().map(|c| c.parse().unwrap()).collect();
        client_addr(peer.parse().unwrap(), lines.iter(), &trusted).to_string()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let lb = ["10.0.0.0/8"];
        assert_eq!(run("10.0.0.1", &["203.0.113.9"], &lb), "203.0.113.9");
        assert_eq!(
            run("192.0.2.1", &["203.0.113.9"], &lb),
            "192.0.2.1",
            "spoofed"
        );
        assert_eq!(run("10.0.0.1", &["203.0.113.9"], &[]), "10.0.0.1");
        assert_eq!(run("10.0.0.1", &[], &lb), "10.0.0.1");
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let lb = ["10.0.0.0/8", "fd00::/8"];
        // The client put a fake address first; the real one was appended by our proxies.
        assert_eq!(
            run("10.0.0.1", &["1.1.1.1, 198.51.100.7, 10.0.0.9"], &lb),
            "198.51.100.7"
        );
        assert_eq!(
            run("10.0.0.1", &["1.1.1.1", "198.51.100.7, fd00::2"], &lb),
            "198.51.100.7"
        );
        assert_eq!(
            run("10.0.0.1", &["10.0.0.5, 10.0.0.6"], &lb),
            "10.0.0.5",
            "all trusted"
        );
        assert_eq!(run("10.0.0.1", &["[2001:db8::1]:443"], &lb), "2001:db8::1");
        assert_eq!(run("10.0.0.1", &["198.51.100.7:5000"], &lb), "198.51.100.7");
        assert_eq!(run("10.0.0.1", &["bogus, 10.0.0.7"], &lb), "10.0.0.7");
        assert_eq!(run("::1", &["198.51.100.7"], &["::1"]), "198.51.100.7");
    }
}
