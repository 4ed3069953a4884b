//! The client's address, for rate limits and audit: the TCP peer, or, when the peer
//! is a trusted proxy, the address it reports in `X-Forwarded-For` (the rightmost
//! entry that is not itself a trusted proxy). Forwarding headers from anyone else are
//! ignored, so a client cannot pick its own address.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

pub use crate::config::Cidr;

/// The client's address given the TCP peer, the request headers and the trusted
/// proxies.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let trusted_ip = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut addr = peer.ip();
    if !trusted_ip(addr) {
        return addr;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| {
            h.trim()
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
        })
        .collect();
    // From the right: each hop was added by the one after it; stop at the first hop
    // that is not a trusted proxy, or at anything malformed.
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        addr = ip;
        if !trusted_ip(ip) {
            break;
        }
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn blocks_parse_and_contain() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("11.0.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.0.0.9".parse().expect("mapped")));
        let one: Cidr = "::1".parse().expect("one");
        assert!(
            one.contains("::1".parse().expect("ip")) && !one.contains("::2".parse().expect("ip"))
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "fd00::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec![
            "127.0.0.1".parse().expect("c"),
            "10.0.0.0/8".parse().expect("c"),
        ];
        let proxy: SocketAddr = "10.0.0.5:4000".parse().expect("addr");
        let stranger: SocketAddr = "203.0.113.9:4000".parse().expect("addr");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // a client cannot choose its address by sending the header itself
        assert_eq!(
            client_addr(stranger, &headers(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        // behind a trusted proxy, the rightmost untrusted hop is the client
        assert_eq!(
            client_addr(proxy, &headers(&["198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_addr(
                proxy,
                &headers(&["6.6.6.6, 198.51.100.7, 10.0.0.4"]),
                &trusted
            ),
            ip("198.51.100.7"),
            "spoofed leftmost entries are ignored"
        );
        assert_eq!(
            client_addr(proxy, &headers(&["6.6.6.6", "198.51.100.7"]), &trusted),
            ip("198.51.100.7"),
            "several header lines"
        );
        assert_eq!(client_addr(proxy, &headers(&[]), &trusted), ip("10.0.0.5"));
        assert_eq!(
            client_addr(proxy, &headers(&["garbage"]), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_addr(proxy, &headers(&["6.6.6.6, garbage, 10.0.0.7"]), &trusted),
            ip("10.0.0.7"),
            "nothing left of a malformed hop counts"
        );
        assert_eq!(
            client_addr(proxy, &headers(&["[2001:db8::1]"]), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_addr(proxy, &headers(&["1.1.1.1"]), &[]),
            ip("10.0.0.5"),
            "no trusted proxies: the peer"
        );
    }
}
