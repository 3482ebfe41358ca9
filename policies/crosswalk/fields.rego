# How an "allow" is built, shared by every partner kind: the catalog lookup, the
# consent checks, the substance-use (42 CFR Part 2) overlay and its notices.
# A per-kind rule only says which fields its route opens and how; allow_decision
# below turns that into the full decision, so no route can forget a field, the
# Part 2 rules or the notices.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

# The catalog entries of the requested resource.
resource_fields := catalog[input.resource]

# Every field of the resource released as-is (for a partner's own records).
release_all := {name: "release" | some name, _ in resource_fields}

# The class each field has for THIS record. A record flagged as carrying 42 CFR
# Part 2 information (input.record.part2) has every `health` field treated as
# `substance_use`. The contract states this for case_status; it is applied to
# every resource so that an outcome or referral flagged Part 2 is protected the
# same way (fail closed).
field_class := object.union(
	{name: spec.class | some name, spec in resource_fields},
	{name: "substance_use" |
		input.record.part2 == true
		some name, spec in resource_fields
		spec.class == "health"
	},
)

# ---------------------------------------------------------------------------
# Building an "allow"
# ---------------------------------------------------------------------------

# route_actions: {"<field>": action} for the fields the route opens. Every
# catalog field starts withheld; the route's actions replace that (only for
# catalog fields and known actions); then substance-use fields go back to
# withheld unless a Part 2 consent permits. So a field newly added to the
# catalog stays withheld until a rule opens it.
# by_consent: true when the route exists only because of the person's consent.
allow_decision(route_actions, reason, by_consent) := {
	"effect": "allow",
	"fields": fields,
	"reason": reason,
	"notices": part2_notices(fields),
	"consent_id": consent_used(fields, by_consent),
} if {
	fields := object.union_n([
		{name: "withhold" | some name, _ in field_class},
		{name: action |
			some name, action in route_actions
			field_class[name]
			action in vocabulary.field_actions
		},
		part2_withheld,
	])
}

# 42 CFR Part 2: substance-use information leaves only under a Part 2 consent
# that names this recipient (and never to police: see part2_consent_permits).
part2_withheld := {name: "withhold" |
	input.record.part2 == true
	not part2_consent_permits
	some name, class in field_class
	class == "substance_use"
}

# True when at least one substance-use field is disclosed in any form.
discloses_substance_use(fields) if {
	input.record.part2 == true
	some name, action in fields
	field_class[name] == "substance_use"
	action != "withhold"
}

# 42 CFR §2.32: every disclosure of Part 2 information made with the patient's
# consent carries the redisclosure statement and an explanation of the scope of
# the consent.
part2_notices(fields) := [vocabulary.notices.part2_redisclosure, scope] if {
	discloses_substance_use(fields)
	scope := sprintf(vocabulary.notices.part2_consent_scope, [
		object.get(consent, "id", "(no id)"),
		input.requester.id,
		concat(", ", sort(consent_purposes)),
	])
} else := []

# The consent is recorded in the decision (and so in the audit log) exactly when
# it opened record-level data: a consent route that released something, or a
# substance-use field released under a Part 2 consent.
consent_used(fields, by_consent) := object.get(consent, "id", null) if {
	by_consent
	some action in fields
	action != "withhold"
} else := object.get(consent, "id", null) if {
	discloses_substance_use(fields)
} else := null

# ---------------------------------------------------------------------------
# Consent
# ---------------------------------------------------------------------------

# The consent on file for the person. The gateway passes only active consents
# (in their period, not revoked); null or absent means none. A list that is not
# an array counts as empty.
consent := input.consent if is_object(input.consent)

consent_recipients := consent_list("recipients")

consent_purposes := consent_list("purposes")

consent_classes := consent_list("classes")

consent_part2_recipients := consent_list("part2_recipients")

consent_list(key) := consent[key] if {
	is_array(consent[key])
} else := []

# The consent names this requester, by partner id or by partner kind.
consent_names_requester if {
	some recipient in consent_recipients
	recipient in {input.requester.id, input.requester.kind}
}

consent_covers_purpose if input.purpose in consent_purposes

# A consent applies when it names the requester and covers the purpose of use;
# which fields it opens is then decided class by class.
consent_applies if {
	consent_names_requester
	consent_covers_purpose
}

# 42 CFR §2.31: a Part 2 consent names its recipient, so only a partner id in
# part2_recipients counts (a kind such as "cbo" does not). It must also cover the
# purpose. Never police: §2.32 bars using Part 2 records against the patient,
# and the program does not give police substance-use information at all.
part2_consent_permits if {
	input.requester.kind != "police"
	input.requester.id in consent_part2_recipients
	consent_covers_purpose
}

# What a consent opens on another partner's record: the classes it covers,
# except direct identifiers, which never cross between partners (records are
# linked by pseudonym, so neither side learns the other's identifiers).
# Substance-use fields are opened here and then decided by the Part 2 check
# alone (part2_withheld).
consent_route_actions := object.union_n([
	{name: "release" | some name, class in field_class; class in consent_classes},
	{name: "release" | some name, class in field_class; class == "substance_use"},
	{name: "withhold" | some name, class in field_class; class == "direct_identifier"},
])

# The consent route of any kind: defined only when a consent applies AND it
# releases at least one field of this record; otherwise the kind's fallback
# (aggregate_only for police, deny for others) decides.
consent_decision(reason) := d if {
	consent_applies
	d := allow_decision(consent_route_actions, reason, true)
	some action in d.fields
	action != "withhold"
}
