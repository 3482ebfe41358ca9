# Police: their own referrals; outcomes only in aggregate, or record-level under
# the person's recorded consent covering police. "The police department does not
# know what happens to individuals after they respond to a call" — and, without
# consent, it should learn it only as counts.
package crosswalk

import rego.v1

police_decision := allow_decision(police_own_referral, "police: own referral; follow-up status withheld (outcomes reach police only in aggregate or under consent)", "route") if {
	input.resource == "referral"
	relationship == "submitter"
} else := deny("police: not its own referral") if {
	# A police partner never sees another police partner's referrals.
	input.resource == "referral"
} else := consent_decision(
	"police: record-level outcome under the person's consent covering police, this purpose and these fields",
	aggregate_only("police: outcomes only in aggregate without a consent covering police, this purpose and these fields"),
) if {
	input.resource in {"outcome", "case_status"}
} else := deny("police: no rule allows this request")

# What police submitted on the referral form, plus the gateway's bookkeeping of
# it. Not `status`: the follow-up status is outcome information (police see
# `workflow_state`, open or closed, only). A field added to the catalog stays
# withheld from police until it is named here.
police_own_referral := {name: "release" | some name in {
	"id", "workflow_state", "created_at", "submitted_by", "assigned_cbo", "subject_pseudonym",
	"cad_number", "officer_id", "arrested", "circumstances", "contact_at", "district",
	"subject.given_name", "subject.surname", "subject.dob", "subject.sex",
	"subject.address.street", "subject.address.city", "subject.address.state", "subject.address.zip",
	"subject.phone", "subject.email", "resources", "follow_up_by",
}}

# Substance-use fields are never released to police, consent or not: see
# part2_consent_permits in fields.rego (42 CFR §2.32 bars use against the patient).
