//! The query string and `Link` header of an API request: `?ns=`, the page query a tag list
//! forwards upstream, `artifactType`, and the next-page link rebuilt for the client.

/// The value of `key` in a query string (no percent-decoding: the values used here, `ns`,
/// `n` and `last`, are host names, numbers and tags).
pub(crate) fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

/// `%XX` sequences decoded (and `+` kept: query values here are media types, not forms);
/// invalid sequences are kept as they are.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The part of a tags/list query that goes upstream: `n` and `last`.
pub(crate) fn forwarded_query(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| kv.starts_with("n=") || kv.starts_with("last="))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Link` of the next page as the client must follow it: the client's own path (its
/// route: prefix, `?ns=`) with the page query the upstream (or the cache) wrote; `None`
/// when `link` is not `<...?query>; rel="next"`.
pub(crate) fn client_link(link: &str, path: &str, ns: Option<&str>) -> Option<String> {
    let target = link.trim().strip_prefix('<')?.split_once('>')?.0;
    let (_, page) = target.split_once('?')?;
    // Rebuilt from checked values only: `n` digits, `last` a tag; the upstream's text is
    // never copied into the header (a `,` or `<` in it could add a link to another host).
    let n =
        query_param(page, "n").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let last = query_param(page, "last")
        .map(|l| percent_decode(&l))
        .filter(|l| {
            matches!(
                oci_cache_core::name::Reference::parse(l),
                Ok(oci_cache_core::name::Reference::Tag(_))
            )
        });
    let page = match (n, last) {
        (Some(n), Some(last)) => format!("n={n}&last={last}"),
        (Some(n), None) => format!("n={n}"),
        (None, Some(last)) => format!("last={last}"),
        (None, None) => return None,
    };
    let ns = ns.map(|n| format!("&ns={n}")).unwrap_or_default();
    Some(format!("<{path}?{page}{ns}>; rel=\"next\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("ns=docker.io&x=1", "ns").as_deref(),
            Some("docker.io")
        );
        assert_eq!(query_param("x=1", "ns"), None);
        assert_eq!(forwarded_query("ns=a&n=10&last=v1&evil=1"), "n=10&last=v1");
    }

    #[test]
    fn artifact_types_are_percent_decoded() {
        assert_eq!(
            percent_decode("application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson"),
            "application/vnd.dev.cosign.artifact.sig.v1+json"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz/x"), "%zz/x");
    }

    #[test]
    fn next_page_links_follow_the_clients_route() {
        let up = r#"</v2/library/alpine/tags/list?n=2&last=b>; rel="next""#;
        assert_eq!(
            client_link(up, "/v2/docker.io/alpine/tags/list", None).as_deref(),
            Some(r#"</v2/docker.io/alpine/tags/list?n=2&last=b>; rel="next""#)
        );
        assert_eq!(
            client_link(up, "/v2/alpine/tags/list", Some("docker.io")).as_deref(),
            Some(r#"</v2/alpine/tags/list?n=2&last=b&ns=docker.io>; rel="next""#)
        );
        assert_eq!(client_link("garbage", "/v2/a/tags/list", None), None);
        // Nothing of the upstream's text but a number and a tag reaches the header.
        let evil =
            r#"</v2/x/tags/list?n=1&last=a, <https://evil.example/v2/x/tags/list?n=1>; rel="next""#;
        assert_eq!(
            client_link(evil, "/v2/x/tags/list", None).as_deref(),
            Some(r#"</v2/x/tags/list?n=1>; rel="next""#)
        );
        assert_eq!(
            client_link(
                "</v2/x/tags/list?n=1x&last=v%2E1>; rel=\"next\"",
                "/v2/x/tags/list",
                None
            )
            .as_deref(),
            Some(r#"</v2/x/tags/list?last=v.1>; rel="next""#)
        );
    }
}
