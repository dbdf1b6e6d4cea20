//! Where an upstream may send the client: the rules for redirects and token realms, both
//! chosen by the upstream and so not trusted.
//!
//! - Redirects are followed only to `http` and `https`, never from `https` down to `http`
//!   (anywhere in the chain), at most [`MAX_REDIRECTS`] times.
//! - Neither a redirect nor a token realm may point at a loopback, link-local, private,
//!   unique-local or unspecified address (IPv4, IPv6, IPv4-mapped IPv6) or at `localhost`,
//!   unless the upstream itself lives on such a host (one of its configured URLs does).
//!   The rule reads the URL's host; it does not resolve names.
//! - Our credentials go to a token realm only over `https`, or to the upstream's own host
//!   (the host of the endpoint that sent the challenge, any port). Any other realm is asked
//!   for a token anonymously, which public repositories allow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;

/// Redirects followed for one request at most.
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Why a redirect target or token realm was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetRefusal {
    /// The scheme is not `http` or `https` (or the URL has no host).
    #[error("the scheme is not http or https")]
    Scheme,
    /// A redirect from `https` to plain `http`.
    #[error("https must not be redirected to plain http")]
    Downgrade,
    /// A loopback, link-local or private address, or `localhost`, while the upstream does
    /// not live on one.
    #[error("loopback, link-local and private addresses are refused")]
    LocalAddress,
    /// More than 10 redirects.
    #[error("too many redirects")]
    TooManyRedirects,
}

/// A refused redirect: what the redirect policy hands reqwest, found again in its error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redirect to {host:?} refused: {reason}")]
pub(crate) struct RedirectRefused {
    pub(crate) host: String,
    pub(crate) reason: TargetRefusal,
}

/// The rules for one upstream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Targets {
    /// The upstream lives on a loopback, link-local or private host.
    upstream_local: bool,
}

impl Targets {
    /// The rules for an upstream with these base URLs.
    pub(crate) fn new(bases: &[String]) -> Self {
        let upstream_local = bases
            .iter()
            .filter_map(|b| Url::parse(b).ok())
            .any(|u| is_local(&u));
        Self { upstream_local }
    }

    /// Whether a redirect from the URLs in `previous` (oldest first) to `next` is followed.
    pub(crate) fn check_redirect(self, previous: &[Url], next: &Url) -> Result<(), TargetRefusal> {
        if previous.len() > MAX_REDIRECTS {
            return Err(TargetRefusal::TooManyRedirects);
        }
        self.check_target(next)?;
        if next.scheme() == "http" && previous.iter().any(|u| u.scheme() == "https") {
            return Err(TargetRefusal::Downgrade);
        }
        Ok(())
    }

    /// Whether a URL (a redirect target or token realm) may be asked at all.
    pub(crate) fn check_target(self, url: &Url) -> Result<(), TargetRefusal> {
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(TargetRefusal::Scheme);
        }
        if !self.upstream_local && is_local(url) {
            return Err(TargetRefusal::LocalAddress);
        }
        Ok(())
    }

    /// The reqwest redirect policy applying [`Targets::check_redirect`].
    pub(crate) fn redirect_policy(self) -> Policy {
        Policy::custom(move |attempt: Attempt<'_>| {
            match self.check_redirect(attempt.previous(), attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(reason) => {
                    let host = attempt.url().host_str().unwrap_or_default().to_owned();
                    attempt.error(RedirectRefused { host, reason })
                }
            }
        })
    }
}

/// Whether the token realm `realm` may receive the upstream's credentials: over https, or
/// on the host of `upstream` (the endpoint that sent the challenge) whatever the port.
pub(crate) fn realm_gets_credentials(realm: &Url, upstream: &Url) -> bool {
    realm.scheme() == "https"
        || realm
            .host_str()
            .zip(upstream.host_str())
            .is_some_and(|(r, u)| r.eq_ignore_ascii_case(u))
}

/// Whether the URL's host is loopback, link-local, private, unique-local, unspecified or
/// `localhost`.
pub(crate) fn is_local(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => is_local_v4(v4),
        Ok(IpAddr::V6(v6)) => is_local_v6(v6),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // shared address space 100.64.0.0/10 (CGNAT, cloud metadata)
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
}

fn is_local_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || ip.to_ipv4_mapped().is_some_and(is_local_v4)
        // IPv4-compatible ::a.b.c.d (deprecated)
        || (ip.segments()[..6].iter().all(|s| *s == 0) && ip.to_ipv4().is_some_and(is_local_v4))
        // NAT64 64:ff9b::/96 with a local IPv4 address inside
        || (ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_local_v4(embedded_low(ip)))
        // 6to4 2002:AABB:CCDD::/48 with a local IPv4 address inside
        || (first == 0x2002 && is_local_v4(embedded_6to4(ip)))
}

/// The IPv4 address of a 6to4 address (`2002:AABB:CCDD::/48`).
fn embedded_6to4(ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[2], o[3], o[4], o[5])
}

/// The IPv4 address in the last 32 bits of `ip`.
fn embedded_low(ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn public() -> Targets {
        Targets::new(&["https://registry.example.com".to_owned()])
    }

    #[test]
    fn local_hosts_are_recognised_in_every_spelling() {
        for local in [
            "http://127.0.0.1/",
            "http://127.1.2.3:5000/",
            "http://2130706433/", // 127.0.0.1 as one number
            "http://0x7f.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://100.100.100.200/", // a cloud metadata service in 100.64.0.0/10
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://[64:ff9b::a00:1]/",    // NAT64 of 10.0.0.1
            "http://[2002:a9fe:a9fe::1]/", // 6to4 of 169.254.169.254
        ] {
            assert!(is_local(&url(local)), "{local}");
        }
        for public in [
            "https://registry-1.docker.io/",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://[2001:db8::1]/",
            "http://[::ffff:8.8.8.8]/",
            "http://localhost.example.com/",
            "http://100.128.0.1/",
            "http://198.20.0.1/",
            "http://[64:ff9b::808:808]/", // NAT64 of 8.8.8.8
            "http://[2002:808:808::1]/",  // 6to4 of 8.8.8.8
        ] {
            assert!(!is_local(&url(public)), "{public}");
        }
    }

    #[test]
    fn redirects_from_a_public_upstream() {
        let t = public();
        let from = [url("https://registry.example.com/v2/x/blobs/sha256:1")];
        assert_eq!(
            t.check_redirect(&from, &url("https://cdn.example.net/b")),
            Ok(())
        );
        for (to, why) in [
            ("http://cdn.example.net/b", TargetRefusal::Downgrade),
            ("https://127.0.0.1/b", TargetRefusal::LocalAddress),
            ("https://[::1]/b", TargetRefusal::LocalAddress),
            ("https://169.254.169.254/b", TargetRefusal::LocalAddress),
            ("https://10.0.0.5/b", TargetRefusal::LocalAddress),
            ("https://192.168.0.5/b", TargetRefusal::LocalAddress),
            ("https://[fd00::5]/b", TargetRefusal::LocalAddress),
            (
                "https://[::ffff:192.168.0.5]/b",
                TargetRefusal::LocalAddress,
            ),
            ("https://localhost/b", TargetRefusal::LocalAddress),
            ("file:///etc/passwd", TargetRefusal::Scheme),
            ("ftp://cdn.example.net/b", TargetRefusal::Scheme),
        ] {
            assert_eq!(t.check_redirect(&from, &url(to)), Err(why), "{to}");
        }
        // A downgrade later in the chain is still a downgrade.
        let chain = [from[0].clone(), url("https://cdn.example.net/a")];
        assert_eq!(
            t.check_redirect(&chain, &url("http://cdn.example.net/b")),
            Err(TargetRefusal::Downgrade)
        );
        let long = vec![from[0].clone(); MAX_REDIRECTS + 1];
        assert_eq!(
            t.check_redirect(&long, &url("https://cdn.example.net/b")),
            Err(TargetRefusal::TooManyRedirects)
        );
    }

    #[test]
    fn an_upstream_on_a_private_host_may_redirect_to_private_hosts() {
        for base in [
            "http://127.0.0.1:5000",
            "http://localhost:5000",
            "http://[::1]:5000",
        ] {
            let t = Targets::new(&[base.to_owned()]);
            let from = [url(&format!("{base}/v2/"))];
            assert_eq!(t.check_redirect(&from, &url("http://10.0.0.5/b")), Ok(()));
            assert_eq!(
                t.check_redirect(&from, &url("http://127.0.0.1:9/b")),
                Ok(())
            );
            assert_eq!(
                t.check_redirect(&from, &url("ftp://127.0.0.1/b")),
                Err(TargetRefusal::Scheme)
            );
        }
    }

    #[test]
    fn realms() {
        let t = public();
        let upstream = url("https://registry.example.com");
        assert_eq!(
            t.check_target(&url("https://auth.example.com/token")),
            Ok(())
        );
        assert_eq!(
            t.check_target(&url("http://169.254.169.254/token")),
            Err(TargetRefusal::LocalAddress)
        );
        assert_eq!(
            t.check_target(&url("file:///token")),
            Err(TargetRefusal::Scheme)
        );
        assert!(realm_gets_credentials(
            &url("https://auth.example.com/token"),
            &upstream
        ));
        assert!(realm_gets_credentials(
            &url("http://REGISTRY.example.com:5001/token"),
            &upstream
        ));
        assert!(!realm_gets_credentials(
            &url("http://auth.example.com/token"),
            &upstream
        ));
    }
}
