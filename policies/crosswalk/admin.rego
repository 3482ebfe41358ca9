# Admins operate the gateway (partners, keys, audit verification) and see no
# identities.
package crosswalk

import rego.v1

admin_decision := allow_decision(admin_audit_view, "admin: the audit log", "route") if {
	input.resource == "audit_entry"
} else := allow_decision(release_all, "admin: consent records", "route") if {
	input.resource == "consent"
} else := allow_decision(admin_view, "admin: operational view without identities", "route") if {
	input.resource in {"referral", "outcome", "case_status"}
} else := deny("admin: no rule allows this request")

# Identities and free text withheld, quasi-identifiers generalized, the rest
# released (substance-use fields still need a Part 2 consent naming the admin).
admin_by_class := {
	"direct_identifier": "withhold",
	"quasi_identifier": "generalize",
	"health": "release",
	"substance_use": "release",
	"justice": "release",
	"operational": "release",
	"free_text": "withhold",
}

admin_view := by_class(admin_by_class)

# The audit log as admins read it: every column, but the subject reference as
# the admin's own pseudonym — the internal subject id never leaves the gateway,
# and one person's entries still share one value.
admin_audit_view := object.union(release_all, {"subject_ref": "pseudonymize"})
