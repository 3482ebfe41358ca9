//! What `crosswalk demo` prints once it listens: the URL, one token per example
//! partner (as `crosswalk token issue` mints them, for the longest lifetime the
//! gateway accepts) and one `curl` command per step of the exchange.
//!
//! Tokens are printed as `export NAME=...` lines and the commands use `$NAME`,
//! so each command stays one line that can be pasted as it is (after the
//! exports). No variable is named `CROSSWALK_*`: the gateway reads those as
//! settings and refuses one that names none.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;

use super::seed::{self, Seeded};
use super::{DemoState, Invocation};
use crate::clock::Clock;
use crate::config::Config;

pub(super) struct Guide {
    pub config: Arc<Config>,
    pub invocation: Invocation,
    pub database_url: String,
    pub seeded: Option<Seeded>,
    pub state: DemoState,
}

/// The partners given a token, and the variable holding it.
const TOKENS: &[(&str, &str)] = &[
    ("pd", "PD_TOKEN"),
    ("cbo-north", "CBO_TOKEN"),
    ("county-health", "HEALTH_TOKEN"),
    ("admin", "ADMIN_TOKEN"),
];

impl Guide {
    pub fn print(&self, addr: SocketAddr, clock: &dyn Clock) -> anyhow::Result<()> {
        let text = self.render(addr, clock)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    fn render(&self, addr: SocketAddr, clock: &dyn Clock) -> anyhow::Result<String> {
        let config = &self.config;
        let now = clock.now();
        let host = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
            // The example server certificate names localhost.
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        let base = format!("https://{host}");
        // In keys-example one CA signs the server's and the partners' certificates.
        let ca = config.key_path(&config.keys.client_ca);
        let curl = format!("curl --cacert {}", shell_path(&ca));
        let lifetime = config.auth.max_token_lifetime_secs;

        let mut s = String::new();
        let w = &mut s;
        writeln!(w)?;
        writeln!(w, "== Crosswalk demo: synthetic data only ==")?;
        match &self.seeded {
            Some(seeded) => writeln!(
                w,
                "Seeded {} referrals from pd ({} of them repeat contacts, some with a typo or no \
                 date of birth; {} distinct subjects after linkage), {} outcomes by cbo-north and \
                 cbo-south and {} case reports by county-health, over the last {} days. Every \
                 person is generated: surnames end in -Demo, emails are @example.*, phones 555-01xx.",
                seeded.referrals,
                seed::REPEATS,
                seeded.people,
                seeded.outcomes,
                seeded.cases,
                seed::DAYS
            )?,
            None => writeln!(
                w,
                "The demo database already holds the seeded data: serving it as it is \
                 (delete it to start over)."
            )?,
        }
        if self.invocation.database_from_env {
            writeln!(w, "Database: DATABASE_URL")?;
        } else {
            writeln!(w, "Database: {}", self.database_url)?;
        }
        writeln!(w, "Gateway: {base}")?;
        writeln!(w)?;
        writeln!(
            w,
            "# Partner tokens (EdDSA JWTs signed with keys-example/partners/*.key.pem; valid {lifetime}s, \
             restart the demo for fresh ones):"
        )?;
        for (partner, var) in TOKENS {
            let key = config.key_path(Path::new(&format!("partners/{partner}.key.pem")));
            let token = crate::auth::issue_token(
                config,
                partner,
                &key,
                Duration::from_secs(lifetime),
                (clock, &crate::randomness::OsRandomness),
            )?;
            writeln!(w, "export {var}={token}")?;
        }
        writeln!(w)?;

        let referral = json!({
            "cad_number": "DEMO-CAD-NEW-1",
            "officer_id": "DEMO-OFFICER-01",
            "subject": {
                "given_name": "Sample",
                "surname": "Person-Demo",
                "dob": "1990-01-01",
                "phone": "(916) 555-0100",
                "email": "sample.person@example.org",
                "address": { "street": "1 Example St", "city": "Sacramento", "state": "CA", "zip": "95814" }
            },
            "contact_at": seed::rfc3339(now - TimeDelta::hours(1)),
            "district": "north",
            "resources": ["mental_health", "homelessness"],
            "follow_up_by": "cbo"
        });
        let case = json!({
            "subject": {
                "given_name": "Sample",
                "surname": "Person-Demo",
                "dob": "1990-01-01",
                "phone": "(916) 555-0100"
            },
            "case_ref": "DEMO-CASE-NEW-1",
            "program": "substance_use",
            "status": "enrolled",
            "effective_at": seed::rfc3339(now - TimeDelta::minutes(30))
        });
        let auth = |var: &str| format!("-H \"Authorization: Bearer ${var}\"");
        let post = |var: &str, body: &serde_json::Value, path: &str| {
            format!(
                "{curl} {} -H 'Content-Type: application/json' -d '{body}' {base}{path}",
                auth(var)
            )
        };
        let get = |var: &str, path: &str| format!("{curl} {} '{base}{path}'", auth(var));

        writeln!(
            w,
            "# 1. Police (pd) refers a (made-up) person; the routing rules pick the CBO:"
        )?;
        writeln!(w, "{}", post("PD_TOKEN", &referral, "/v1/referrals"))?;
        writeln!(
            w,
            "# 2. Police lists its own referrals (status only, no outcomes):"
        )?;
        writeln!(w, "{}", get("PD_TOKEN", "/v1/referrals"))?;
        writeln!(w, "# 3. cbo-north lists its queue:")?;
        writeln!(w, "{}", get("CBO_TOKEN", "/v1/referrals"))?;
        if let Some(id) = &self.state.sample_referral {
            writeln!(
                w,
                "# 4. cbo-north reads one of its referrals (fields as the policy releases them):"
            )?;
            writeln!(w, "{}", get("CBO_TOKEN", &format!("/v1/referrals/{id}")))?;
            writeln!(w, "# 5. cbo-north records a follow-up outcome on it:")?;
            let outcome = json!({
                "kind": "contacted",
                "occurred_at": seed::rfc3339(now),
                "notes": "Demo note: reached by phone."
            });
            writeln!(
                w,
                "{}",
                post(
                    "CBO_TOKEN",
                    &outcome,
                    &format!("/v1/referrals/{id}/outcomes")
                )
            )?;
        }
        writeln!(
            w,
            "# 6. County health reports a case status (linked by pseudonym; it learns nothing back):"
        )?;
        writeln!(w, "{}", post("HEALTH_TOKEN", &case, "/v1/cases"))?;
        writeln!(
            w,
            "# 7. The administrator reads the audit log (ids and codes, never identities):"
        )?;
        writeln!(
            w,
            "{}",
            get(
                "ADMIN_TOKEN",
                "/v1/audit/entries?action=referral.create&limit=5"
            )
        )?;
        writeln!(w, "# 8. Verify the audit hash chain offline:")?;
        let config_arg = self
            .invocation
            .config
            .as_deref()
            .map(|path| format!(" --config {}", shell_path(path)))
            .unwrap_or_default();
        let database = if self.invocation.database_from_env {
            String::new()
        } else {
            format!("DATABASE_URL={} ", self.database_url)
        };
        writeln!(
            w,
            "{database}cargo run -q -- audit verify{config_arg}   # or: crosswalk audit verify"
        )?;
        writeln!(w)?;
        writeln!(w, "Serving until Ctrl-C.")?;
        Ok(s)
    }
}

/// A path as a shell word: quoted when it holds anything but the usual characters.
fn shell_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
