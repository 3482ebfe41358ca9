# Health partners: their own case status; nothing of police referrals or CBO
# outcomes without the person's consent, and even then never identifiers —
# records are linked by pseudonym so that neither side learns the other's.
package crosswalk

import rego.v1

health_decision := allow_decision(release_all, "health: case status it submitted", "program") if {
	# Its own program's records coming back to it: not a disclosure under 42 CFR
	# Part 2, so substance-use fields are released (with the redisclosure notice)
	# without a Part 2 consent.
	input.resource == "case_status"
	relationship == "submitter"
} else := allow_decision(release_all, "health: its own case status", "route") if {
	# The health partner linked to the person but not the one that submitted this
	# case status: substance-use fields still need a Part 2 consent naming it.
	input.resource == "case_status"
	relationship == "linked_health"
} else := allow_decision(release_all, "health: a consent it recorded", "route") if {
	input.resource == "consent"
	relationship == "submitter"
} else := allow_decision(recorder_accounting_view, "health: disclosures made under consents it recorded (the person's accounting)", "route") if {
	input.resource == "audit_entry"
	relationship == "submitter"
} else := consent_decision(
	"health: another partner's record under the person's consent covering health, this purpose and these fields; identifiers withheld",
	health_refused,
) if {
	input.resource in {"referral", "outcome", "case_status"}
} else := health_refused

health_refused := deny("health: nothing of another partner's records without a consent covering health, this purpose and these fields")
