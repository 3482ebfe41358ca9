# Health partners: their own case status; nothing of police referrals or CBO
# outcomes without the person's consent, and even then never identifiers —
# records are linked by pseudonym so that neither side learns the other's.
package crosswalk

import rego.v1

health_decision := allow_decision(release_all, "health: its own case status", false) if {
	# Added to the contract: `submitter` counts as its own, like `linked_health`.
	input.resource == "case_status"
	relationship in {"linked_health", "submitter"}
} else := d if {
	input.resource in {"referral", "outcome", "case_status"}
	d := consent_decision("health: another partner's record under the person's consent covering health, this purpose and these fields; identifiers withheld")
} else := allow_decision(release_all, "health: a consent it recorded", false) if {
	input.resource == "consent"
	relationship == "submitter"
} else := deny("health: nothing of another partner's records without a consent covering health, this purpose and these fields")
