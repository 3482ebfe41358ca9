# How an "allow" is built, shared by every partner kind: the catalog lookup, the
# consent checks, the substance-use (42 CFR Part 2) overlay and its notices.
# A per-kind rule only says which fields its route opens and how; allow_decision
# below turns that into the full decision, so no route can forget a field, the
# Part 2 rules or the notices.
#
# Why the rules read the way they do (README.md, "How the gateway evaluates
# it"): the Rego tests, and decisions whenever the VM cannot take them, run on
# regorus's interpreter, which pays for each loop iteration, each function call
# and, most of all, each reference to `data` or to another rule (a few
# microseconds each). So a decision makes as few passes over the resource's
# fields as it can, a rule or data document used inside a loop is first bound
# to a local variable (`classes := field_class`), and class-based routes go
# through a small per-class table (by_class). And no `else` branch fails inside
# an iteration (a helper such as opens_something holds the loop), which
# regorus's VM would get wrong. The meaning is plain Rego; only the spelling is
# chosen for the engines.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

# The catalog entries of the requested resource.
resource_fields := catalog[input.resource]

# Every field of the resource withheld: where every "allow" starts, so that a
# field no route opens (e.g. one newly added to the catalog) stays withheld.
withhold_all := {name: "withhold" | some name, _ in resource_fields}

# Every field of the resource released as-is (for a partner's own records).
release_all := {name: "release" | some name, _ in resource_fields}

# The record carries 42 CFR Part 2 (substance-use program) information.
part2_record if input.record.part2 == true

# The class each field has for THIS record. A record flagged as carrying 42 CFR
# Part 2 information has every `health` field treated as `substance_use`. The
# contract states this for case_status; it is applied to every resource so that
# an outcome or referral flagged Part 2 is protected the same way (fail closed).
field_class := declared_class if {
	not part2_record
} else := object.union(declared_class, {name: "substance_use" |
	some name, class in declared_class
	class == "health"
})

declared_class := {name: spec.class | some name, spec in resource_fields}

# The fields that hold substance-use information on this record.
substance_use_fields := {name | some name, class in field_class; class == "substance_use"}

# A per-class table applied to every field of this record: {class: action} ->
# {field: action}. Fields whose class the table does not name are left out (and
# so stay withheld).
by_class(table) := {name: table[class] | some name, class in classes} if {
	classes := field_class
}

# ---------------------------------------------------------------------------
# Building an "allow"
# ---------------------------------------------------------------------------

# route_actions: {"<field>": action} for the fields the route opens. Every
# catalog field starts withheld; the route's actions replace that (only for
# catalog fields and known actions). So a field newly added to the catalog
# stays withheld until a rule opens it. A Part 2 record the basis does not
# permit is denied as a whole (part2_hidden), never released with its
# substance-use fields withheld.
#
# basis: why the route exists, which decides how 42 CFR Part 2 applies:
#   "route"   - the requester's own route (its referral, its assignment, its role):
#               a Part 2 record needs a Part 2 consent naming it;
#   "consent" - the route exists only because of the person's consent: the same,
#               and the consent is recorded as used whenever it opens a field;
#   "program" - a Part 2 program's own records returned to it: 42 CFR Part 2
#               governs disclosures, and giving a program back what it submitted
#               discloses nothing to anyone new, so no consent is needed; they
#               still carry the redisclosure statement, so that whoever handles
#               them there knows they are Part 2 records.
allow_decision(route_actions, reason, basis) := deny(part2_absent_reason) if {
	# A record whose substance-use fields this requester may not have is
	# absent, not released with them withheld: a row with its program and
	# status blank says "substance use" as plainly as the fields would (42 CFR
	# §2.13 protects the fact that someone is a patient). The gateway leaves
	# a denied record out of lists and answers a read of it like an unknown id.
	part2_hidden(basis, route_actions)
} else := {
	"effect": "allow",
	"fields": fields,
	"reason": reason,
	"notices": part2_notices(fields, basis),
	"consent_used": consent_used(fields, basis),
} if {
	catalog_fields := resource_fields
	known_actions := vocabulary.field_actions
	opened := {name: action |
		some name, action in route_actions
		catalog_fields[name]
		action in known_actions
	}
	fields := object.union(withhold_all, opened)
}

# 42 CFR Part 2: substance-use information leaves only under a Part 2 consent
# of the program that holds it naming this recipient (and never to police: see
# part2_consent_permits), or to the program whose records they are. Any other
# requester does not get the record at all (allow_decision).
# A Part 2 record is released whole or not at all: hidden without a Part 2
# consent permitting this requester, and hidden when the route itself would
# withhold one of its substance-use fields (an export's class table does), so
# that no requester ever gets a Part 2 record with blanks where a non-Part 2
# record has values.
part2_hidden(basis, _) if {
	carries_substance_use
	basis != "program"
	not part2_consent_permits
}

part2_hidden(_, route_actions) if {
	carries_substance_use
	withholds_substance_use(route_actions)
}

# A Part 2 record of a resource with health fields (a consent or an audit entry
# holds no substance-use information, whatever its flag).
carries_substance_use if {
	part2_record
	count(substance_use_fields) > 0
}

# Some substance-use field of this record the route leaves withheld (a helper,
# so that the iteration is not in an `else` branch: see the file's header).
withholds_substance_use(route_actions) if {
	known_actions := vocabulary.field_actions
	some name in substance_use_fields
	not opens_field(route_actions, name, known_actions)
}

opens_field(route_actions, name, known_actions) if {
	action := route_actions[name]
	action != "withhold"
	action in known_actions
}

part2_absent_reason := "a 42 CFR Part 2 record this requester may not receive is absent, not withheld field by field"

# True when at least one substance-use field is disclosed in any form.
discloses_substance_use(fields) if {
	part2_record
	some name in substance_use_fields
	fields[name] != "withhold"
}

# 42 CFR §2.32: every disclosure of Part 2 information made with the patient's
# consent carries the redisclosure statement and an explanation of the scope of
# the consent. A program's own records carry the statement only: no consent
# was used, so there is no scope to explain.
part2_notices(fields, basis) := [] if {
	not discloses_substance_use(fields)
} else := [vocabulary.notices.part2_redisclosure] if {
	basis == "program"
} else := [vocabulary.notices.part2_redisclosure, scope] if {
	scope := sprintf(vocabulary.notices.part2_consent_scope, [
		input.requester.id,
		concat(", ", sort(consent_purposes)),
	])
}

# Whether the consent opened record-level data: a consent route that released
# something, or a substance-use field released under a Part 2 consent. The
# gateway then records the consent's id with the disclosure; the decision
# itself never names the consent, so that one decision serves every consent
# with the same scope (and the decision cache can share it).
consent_used(fields, "consent") := true if {
	opens_something(fields)
} else := false

consent_used(fields, "route") := true if {
	discloses_substance_use(fields)
} else := false

consent_used(_, "program") := false

# ---------------------------------------------------------------------------
# Consent
# ---------------------------------------------------------------------------

# The consent on file for the person, if it opens THIS record. The gateway
# passes only active consents (in their period, not revoked) recorded by the
# record's holder; null or absent means none. A consent opens only the records
# of the partner that recorded it, its discloser (42 CFR §2.31 names the
# program that discloses): a CBO's consent never opens county health's cases,
# whatever recipients and classes it lists. So the policy checks it too, and a
# consent whose discloser is not the record's holder (or a record with no
# holder, or an input missing either) counts as none. A list that is not an
# array counts as empty.
consent := input.consent if {
	is_object(input.consent)
	is_string(input.record.holder)
	input.consent.discloser == input.record.holder
}

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

# What a consent opens on another partner's record, class by class: the classes
# it covers, except direct identifiers, which never cross between partners
# (records are linked by pseudonym, so neither side learns the other's
# identifiers). Substance-use fields are opened here and then decided by the
# Part 2 check alone (part2_hidden: without a Part 2 consent the record is absent).
consent_class_actions := object.union_n([
	{class: "release" | some class in consent_classes},
	{"substance_use": "release"},
	{"direct_identifier": "withhold"},
])

# The consent route of any kind: the consent's view when a consent applies AND
# it releases at least one field of this record; otherwise the kind's fallback
# (`otherwise`: aggregate_only for police, deny for others). The fallback is an
# argument, not a later `else` in the kind's rule, so that every rule chain
# stays a plain sequence of conditions.
consent_decision(reason, otherwise) := d if {
	consent_applies
	d := allow_decision(by_class(consent_class_actions), reason, "consent")
	opens_something(d.fields)
} else := otherwise

# At least one field is released in some form.
opens_something(fields) if {
	some action in fields
	action != "withhold"
}

# ---------------------------------------------------------------------------
# The accounting of disclosures for the partner that recorded the consent
# ---------------------------------------------------------------------------

# A CBO or health partner that recorded a person's consent reads, for that
# person, the audit entries of disclosures made under the consents it recorded
# (relationship "submitter" on audit_entry: it recorded the consent the entries
# name; the gateway filters the entries). Who received what, when, for what
# purpose, under which policy and consent — not the gateway's internal subject
# reference, the decision's wording, the entry's detail codes or the chain hash,
# which are for administrators.
recorder_accounting_view := {name: "release" | some name in {
	"seq", "at", "actor", "action", "purpose", "resource", "record_id", "fields",
	"policy_version", "consent_id",
}}
