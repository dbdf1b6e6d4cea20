//! The replicas' peer settings: `peers` (a static list) or `peers_dns` (a headless
//! Service's `host:port`), `peer_secret_file`, `advertise` and `peer_timeout_secs`.

use std::time::Duration;

use super::{secret, Config, ConfigError};
use crate::peers::{PeerConfig, PeerSecret, PeerSource};

impl Config {
    /// The peer set-up, when `peers` or `peers_dns` is set: checked (one source, a secret
    /// of at least 32 bytes, this replica's own URL known).
    pub fn peer_config(&self) -> Result<Option<PeerConfig>, ConfigError> {
        let err = |m: &str| Err(ConfigError::Peers(m.to_owned()));
        let source = match (self.peers.is_empty(), &self.peers_dns) {
            (true, None) => return Ok(None),
            (false, Some(_)) => return err("set peers or peers_dns, not both"),
            (false, None) => PeerSource::Static(self.peers.clone()),
            (true, Some(name)) => PeerSource::Dns(name.clone()),
        };
        for url in &self.peers {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return err(&format!("peer {url:?} is not an http(s) URL"));
            }
        }
        let Some(file) = &self.peer_secret_file else {
            return err(
                "peers need peer_secret_file (a shared secret, so no client can pose as a replica)",
            );
        };
        let secret = secret::resolve("peers", None, None, Some(file))?.unwrap_or_default();
        let secret = PeerSecret::new(&secret).map_err(|e| ConfigError::Peers(e.to_string()))?;
        let me = match &self.advertise {
            Some(url) => url.clone(),
            None if self.listen.ip().is_unspecified() => {
                return err("peers need advertise (this replica's URL, e.g. http://$(POD_IP):5000) when listen is a wildcard address")
            }
            None => format!("http://{}", self.listen),
        };
        let mut config = PeerConfig::new(source, &me, secret);
        config.answer_timeout = Duration::from_secs(self.peer_timeout_secs.max(1));
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn peers_need_one_source_a_strong_secret_and_an_address() {
        assert!(config("").peer_config().unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let strong = dir.path().join("strong");
        std::fs::write(&strong, "0123456789abcdef0123456789abcdef\n").unwrap();
        let weak = dir.path().join("weak");
        std::fs::write(&weak, "short\n").unwrap();
        let s = strong.display();
        let ok = config(&format!(
            "listen = \"127.0.0.1:5000\"\npeers = [\"http://127.0.0.1:5000\", \"http://127.0.0.1:5001/\"]\npeer_secret_file = \"{s}\"\n"
        ))
        .peer_config()
        .unwrap()
        .unwrap();
        assert_eq!(ok.me, "http://127.0.0.1:5000");
        assert!(!format!("{ok:?}").contains("0123456789abcdef"));
        for bad in [
            "peers = [\"http://a:1\"]\n".to_owned(),
            format!("peers = [\"http://a:1\"]\npeer_secret_file = \"{}\"\nadvertise = \"http://a:1\"\n", weak.display()),
            format!("peers = [\"http://a:1\"]\npeer_secret_file = \"{s}\"\n"),
            format!("peers = [\"a:1\"]\npeer_secret_file = \"{s}\"\nadvertise = \"http://a:1\"\n"),
            format!("peers = [\"http://a:1\"]\npeers_dns = \"x:1\"\npeer_secret_file = \"{s}\"\nadvertise = \"http://a:1\"\n"),
        ] {
            assert!(config(&bad).peer_config().is_err(), "{bad}");
        }
        let dns = config(&format!(
            "peers_dns = \"oci-cache-headless.ns.svc:5000\"\npeer_secret_file = \"{s}\"\nadvertise = \"http://10.0.0.5:5000\"\n"
        ))
        .peer_config()
        .unwrap()
        .unwrap();
        assert_eq!(
            dns.source,
            PeerSource::Dns("oci-cache-headless.ns.svc:5000".into())
        );
    }
}
