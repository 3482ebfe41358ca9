//! The outside witness's address in `[audit]`; delivery is
//! [`crate::audit::witness`]'s.

use serde::Deserialize;

/// An `https://` URL with a host, checked when the configuration is read.
/// Its `Debug` shows only the scheme, host and port: the path or query may
/// carry a credential.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WitnessUrl {
    pub(crate) uri: hyper::Uri,
}

impl TryFrom<String> for WitnessUrl {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        const PROBLEM: &str =
            "must be an https:// URL with a host, e.g. https://witness.example.org/checkpoints";
        let uri: hyper::Uri = text.parse().map_err(|_| PROBLEM)?;
        if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
            return Err(PROBLEM);
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(
                "must not carry a user or password (put a token in the path, or use a client certificate at a proxy)",
            );
        }
        Ok(Self { uri })
    }
}

impl std::fmt::Debug for WitnessUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}:{}/…", self.host(), self.port())
    }
}

impl WitnessUrl {
    /// The host, without the brackets of an IPv6 literal.
    pub(crate) fn host(&self) -> &str {
        let host = self.uri.host().unwrap_or_default();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    pub(crate) fn port(&self) -> u16 {
        self.uri.port_u16().unwrap_or(443)
    }
}

/// The default for `audit.witness_retry_max_secs`.
pub(crate) fn default_retry_max_secs() -> u64 {
    60
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_urls_are_https_with_a_host_and_never_debug_their_path() {
        let url =
            WitnessUrl::try_from("https://witness.example.org:8443/in?token=s3cret".to_owned())
                .expect("valid");
        assert_eq!(format!("{url:?}"), "https://witness.example.org:8443/…");
        assert_eq!(url.port(), 8443);
        for bad in [
            "http://witness.example.org/",
            "witness.example.org",
            "https:///path",
            "https://user:pw@witness.example.org/",
        ] {
            assert!(WitnessUrl::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let v6 = WitnessUrl::try_from("https://[::1]/".to_owned()).expect("valid");
        assert_eq!((v6.host(), v6.port()), ("::1", 443));
    }
}
