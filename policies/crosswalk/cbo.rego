# Community-based organizations: the referrals assigned to them, with the minimum
# contact details needed to follow up (HIPAA minimum necessary), the outcomes of
# those referrals, the consents they recorded, and health case status only under
# the person's consent.
package crosswalk

import rego.v1

cbo_decision := allow_decision(cbo_assigned_referral, "assigned CBO: minimum contact details to follow up", "route") if {
	input.resource == "referral"
	relationship == "assigned_cbo"
} else := allow_decision(release_all, "CBO: outcome of a referral assigned to it", "route") if {
	# Added to the contract: `submitter` too, for the CBO that recorded the outcome.
	input.resource == "outcome"
	relationship in {"assigned_cbo", "submitter"}
} else := allow_decision(release_all, "CBO: a consent it recorded", "route") if {
	input.resource == "consent"
	relationship == "submitter"
} else := allow_decision(recorder_accounting_view, "CBO: disclosures made under consents it recorded (the person's accounting)", "route") if {
	input.resource == "audit_entry"
	relationship == "submitter"
} else := consent_decision(
	"CBO: case status under the person's consent covering this CBO, this purpose and these fields",
	cbo_refused,
) if {
	# Health case status is another partner's record: only under consent.
	# case_ref (a direct identifier) is always withheld on this route.
	input.resource == "case_status"
} else := cbo_refused

cbo_refused := deny("CBO: not assigned to this record, and no consent covers it")

# Who the person is and how to reach them, what they need, and the follow-up
# state. Withheld: cad_number, officer_id and arrested (police detail that does
# not help a CBO offer services and could chill engagement), and circumstances
# (free text: minimum necessary). A field added to the catalog stays withheld
# from CBOs until it is named here.
cbo_assigned_referral := {name: "release" | some name in {
	"id", "workflow_state", "status", "created_at", "submitted_by", "assigned_cbo", "subject_pseudonym",
	"subject.given_name", "subject.surname", "subject.dob", "subject.sex",
	"subject.address.street", "subject.address.city", "subject.address.state", "subject.address.zip",
	"subject.phone", "subject.email",
	"contact_at", "district", "resources", "follow_up_by",
}}
