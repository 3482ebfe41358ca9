//! Email addresses.

use email_address::{EmailAddress, Options};

/// Normalizes an email address: trimmed, lower-cased (local parts are
/// case-insensitive at every provider we will meet, even if RFC 5321 allows
/// otherwise), and of a plausible shape: RFC 5322 syntax, a domain with a dot,
/// no IP-literal domain and no display name (`Ann <ann@example.org>`).
///
/// Provider-specific rewriting (Gmail dots, `+tags`) is deliberately not done:
/// it would merge addresses that other providers keep apart.
pub fn normalize_email(input: &str) -> Result<String, String> {
    let email = input.trim().to_lowercase();
    if email.is_empty() {
        return Err("is empty".to_owned());
    }
    let options = Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    match EmailAddress::parse_with_options(&email, options) {
        Ok(_) => Ok(email),
        Err(_) => Err("is not an email address (expected name@domain.tld)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lowercases() {
        assert_eq!(
            normalize_email("  Ann.Lee@Example.ORG ").as_deref(),
            Ok("ann.lee@example.org")
        );
        assert_eq!(
            normalize_email("ann+crisis@example.org").as_deref(),
            Ok("ann+crisis@example.org")
        );
    }

    #[test]
    fn rejects_implausible_shapes() {
        for input in [
            "",
            "ann",
            "ann@",
            "@example.org",
            "ann@localhost",
            "ann lee@example.org",
            "ann@@example.org",
            "ann@[192.0.2.1]",
            "Ann <ann@example.org>",
            "ann@-example.org",
        ] {
            assert!(normalize_email(input).is_err(), "{input:?}");
        }
    }
}
