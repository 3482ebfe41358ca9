# Admins: the audit log and consent records; an operational view without
# identities. Helpers (t_*) are in decision_test.rego.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

test_admin_audit_log_released if {
	every purpose in vocabulary.purposes_by_kind.admin {
		every action in {"read", "list"} {
			d := t_decide(t_with(t_req("admin", action, "audit_entry", "none"), {"purpose": purpose}))
			d.effect == "allow"
			d.fields == object.union(t_all("audit_entry", "release"), {"subject_ref": "pseudonymize"})
		}
	}
}

test_admin_consent_records_released if {
	d := t_decide(t_req("admin", "read", "consent", "none"))
	d.effect == "allow"
	d.fields == t_all("consent", "release")
}

t_admin_expected(resource) := {name: action |
	some name, spec in catalog[resource]
	action := t_admin_class_action(spec.class)
}

t_admin_class_action(class) := "withhold" if class in {"direct_identifier", "free_text"}

t_admin_class_action(class) := "generalize" if class == "quasi_identifier"

t_admin_class_action(class) := "release" if not class in {"direct_identifier", "free_text", "quasi_identifier"}

test_admin_sees_no_identities if {
	every resource in {"referral", "outcome", "case_status"} {
		every rel in vocabulary.relationships {
			d := t_decide(t_req("admin", "read", resource, rel))
			d.effect == "allow"
			d.fields == t_admin_expected(resource)
			d.consent_used == false
		}
	}
}

test_admin_referral_view if {
	d := t_decide(t_req("admin", "list", "referral", "none"))
	d.fields["subject.given_name"] == "withhold"
	d.fields.cad_number == "withhold"
	d.fields.circumstances == "withhold"
	d.fields["subject.dob"] == "generalize"
	d.fields.officer_id == "release"
	d.fields.status == "release"
}

# The operational view is not a Part 2 disclosure route: a Part 2 record is
# absent from it, not shown with its program and status blank.
test_admin_part2_record_absent if {
	d := t_decide(t_with(t_req("admin", "read", "case_status", "none"), t_part2))
	t_deny_shape(d)
	d.reason == part2_absent_reason
}

test_admin_export_denied if {
	t_deny_shape(t_decide(t_req("admin", "export", "referral", "none")))
}
