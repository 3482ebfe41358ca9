"""Schemathesis settings per partner for .ci/fuzz-api, from a running demo gateway.

Usage: fuzz_seed.py BASE_URL CA_FILE CROSSWALK_BINARY CONFIG STATIC_TOML OUT_DIR

Reads ids that exist (referrals each partner may use), makes one case, one
consent and one export so that their ids exist too, and writes
OUT_DIR/schemathesis-PARTNER.toml for each partner: STATIC_TOML followed by
dictionaries of those values, bound to the fields and path ids that need them
with a probability below 1, so generated values are still sent too. Without
them nearly every generated id names nothing and the fuzzer never gets past the
lookup.
"""

import datetime
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

PARTNERS = ["pd", "cbo-north", "county-health", "evaluator", "admin"]


def main():
    base, ca, crosswalk, config, static_toml, out_dir = sys.argv[1:7]
    context = ssl.create_default_context(cafile=ca)
    tokens = {
        partner: subprocess.check_output(
            [crosswalk, "--config", config, "token", "issue", "--partner", partner, "--ttl", "15m"],
            text=True,
        ).strip()
        for partner in PARTNERS
    }

    def call(method, path, partner, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method)
        request.add_header("Authorization", "Bearer " + tokens[partner])
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, context=context) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, None

    def referrals(partner):
        status, page = call("GET", "/v1/referrals?limit=50", partner)
        return page["referrals"] if status == 200 else []

    def next_cursor(path, partner):
        status, page = call("GET", path, partner)
        return page.get("next_cursor") if status == 200 else None

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    # The 28th of last month, noon: inside the whole months the document's
    # date patterns admit, and after most of the demo's 90 days of referrals.
    last_month = now.replace(day=1) - datetime.timedelta(days=1)
    recent = last_month.replace(day=28, hour=12, minute=0, second=0)
    stamp = recent.strftime("%Y-%m-%dT%H:%M:%SZ")
    police_referrals = [r["id"] for r in referrals("pd")]
    # A CBO's outcomes must not predate the referral: referrals received
    # before `recent`, still open.
    cbo_referrals = [
        r["id"]
        for r in referrals("cbo-north")
        if r.get("created_at", "") < stamp and r.get("status") != "closed"
    ]
    assert len(police_referrals) >= 8 and len(cbo_referrals) >= 8, "the demo seeded too few referrals"
    status, case = call(
        "POST",
        "/v1/cases",
        "county-health",
        {
            "subject": {"given_name": "Fuzz", "surname": "Seed-Demo", "dob": "1990-01-01"},
            "case_ref": "FUZZ-SEED-1",
            "program": "mental_health",
            "status": "enrolled",
            "effective_at": stamp,
        },
    )
    assert status == 201, f"seeding a case: {status}"
    end = (now + datetime.timedelta(days=400)).replace(day=10).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, consent = call(
        "POST",
        "/v1/consents",
        "cbo-north",
        {
            "referral": cbo_referrals[0],
            "recipients": ["police"],
            "purposes": ["CAREMGT"],
            "classes": ["operational"],
            "period": {"start": stamp, "end": end},
            "method": "written",
            "evidence_hash": "sha256:" + "ab" * 32,
        },
    )
    assert status == 201, f"seeding a consent: {status}"
    # The health partner's own consent on its case, so that its accounting of
    # disclosures about that person is something it may read.
    status, _ = call(
        "POST",
        "/v1/consents",
        "county-health",
        {
            "case": case["id"],
            "recipients": ["cbo"],
            "purposes": ["CAREMGT"],
            "classes": ["operational"],
            "period": {"start": stamp, "end": end},
            "method": "written",
            "evidence_hash": "sha256:" + "cd" * 32,
        },
    )
    assert status == 201, f"seeding a health consent: {status}"
    status, export = call("POST", "/v1/exports", "evaluator", {"study": "demo-study"})
    assert status == 202, f"seeding an export: {status}"

    with open(static_toml, encoding="utf-8") as f:
        static = f.read()
    for partner in PARTNERS:
        own = cbo_referrals if partner.startswith("cbo") else police_referrals
        dictionaries = {
            "referrals": own,
            "cases": [case["id"]],
            "studies": ["demo-study"],
            "cbos": ["cbo-north", "cbo-south"],
            "recipients": ["police", "cbo", "health", "pd", "cbo-north", "cbo-south", "county-health"],
            "partners": ["pd", "cbo-north", "cbo-south", "county-health"],
            "self": [partner],
            "recent": [stamp],
            # An export window holding the demo's referrals.
            "export_from": [(recent - datetime.timedelta(days=120)).strftime("%Y-%m-%d")],
            "export_to": [recent.strftime("%Y-%m-%d")],
            "consent_end": [end],
        }
        # (field, dictionary, probability). Fields that name the caller or
        # another record in the gateway always take a value that exists: in a
        # consent they are four independent rules, and at 0.9 each too few
        # generated consents pass them all for the fuzzer to learn anything
        # past them (the negative and coverage phases still send other values).
        bindings = [
            ("body.study", "studies", 0.9),
            ("body.assign_to", "cbos", 0.9),
            ("body.discloser", "self", 1.0),
            ("body.recipients[*]", "recipients", 1.0),
            ("body.part2.recipients[*]", "partners", 1.0),
            ("body.occurred_at", "recent", 0.9),
            ("body.effective_at", "recent", 0.9),
            ("body.contact_at", "recent", 0.9),
            ("body.period.start", "recent", 0.9),
            ("body.period.end", "consent_end", 0.9),
            ("body.from", "export_from", 0.9),
            ("body.to", "export_to", 0.9),
        ]
        # A consent or an accounting is asked about a referral (a CBO, an
        # administrator) or a case (a health partner), never both.
        if partner == "county-health":
            bindings += [("body.case", "cases", 1.0), ("query.case", "cases", 1.0)]
        else:
            bindings += [
                ("body.referral", "referrals", 1.0),
                ("query.referral", "referrals", 1.0),
            ]
        lines = [static, "", "# Generated by .ci/fuzz_seed.py from the demo gateway."]
        for name, values in dictionaries.items():
            lines.append(f"[dictionaries.{name}]")
            lines.append(f"values = {json.dumps(values)}")
        lines.append("")
        lines.append("[parameters]")
        for key, name, probability in bindings:
            lines.append(f'"{key}" = {{ dictionary = "{name}", probability = {probability} }}')
        # Reassigning moves a referral away and the first `closed` outcome
        # closes one (every later outcome is a 409): each operation gets
        # several referrals of its own, so that the later phases still find
        # some open and with this partner.
        movable, followed = own[-4:], own[:-4]
        lines.append("[dictionaries.movable]")
        lines.append(f"values = {json.dumps(movable)}")
        lines.append("[dictionaries.followed]")
        lines.append(f"values = {json.dumps(followed)}")
        operations = [
            (
                "^/v1/referrals/\\{id\\}/assignment$",
                {"path.id": {"dictionary": "movable", "probability": 1.0}},
            ),
            (
                "^/v1/referrals/\\{id\\}(/outcomes|/case-status)?$",
                {"path.id": {"dictionary": "followed", "probability": 1.0}},
            ),
            ("^/v1/consents/\\{id\\}", {"path.id": consent["id"]}),
            ("^/v1/exports/\\{id\\}", {"path.id": export["id"]}),
        ]
        for path, name in [("/v1/referrals", "referrals_cursor"), ("/v1/outcomes", "outcomes_cursor")]:
            cursor = next_cursor(path + "?limit=1", partner)
            if cursor:
                lines.append(f"[dictionaries.{name}]")
                lines.append(f"values = {json.dumps([cursor])}")
                binding = {"dictionary": name, "probability": 0.8}
                operations.append((f"^{path}$", {"query.cursor": binding}))
        for regex, parameters in operations:
            lines.append("")
            lines.append("[[operations]]")
            lines.append(f"include-path-regex = {json.dumps(regex)}")
            inline = ", ".join(f'"{k}" = {toml_value(v)}' for k, v in parameters.items())
            lines.append(f"parameters = {{ {inline} }}")
        with open(os.path.join(out_dir, f"schemathesis-{partner}.toml"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def toml_value(value):
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


if __name__ == "__main__":
    main()
