# CBOs: minimum contact details on assigned referrals, outcomes of those
# referrals, their own consents, case status only under consent. Helpers (t_*)
# are in decision_test.rego.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

t_cbo_referral_fields := object.union(t_all("referral", "release"), {
	"cad_number": "withhold",
	"officer_id": "withhold",
	"arrested": "withhold",
	"circumstances": "withhold",
})

test_cbo_assigned_referral_minimum_contact_details if {
	every purpose in vocabulary.purposes_by_kind.cbo {
		every action in {"read", "list"} {
			d := t_decide(t_with(t_req("cbo", action, "referral", "assigned_cbo"), {"purpose": purpose}))
			d.effect == "allow"
			d.fields == t_cbo_referral_fields
			d.reason == "assigned CBO: minimum contact details to follow up"
			d.notices == []
			d.consent_used == false
		}
	}
}

test_cbo_assigned_referral_gets_contact_details if {
	d := t_decide(t_req("cbo", "read", "referral", "assigned_cbo"))
	every name in {"subject.given_name", "subject.surname", "subject.phone", "subject.email", "subject.address.street", "status", "resources"} {
		d.fields[name] == "release"
	}
}

test_cbo_unassigned_referral_denied if {
	every rel in {"none", "submitter", "linked_health"} {
		d := t_decide(t_req("cbo", "read", "referral", rel))
		t_deny_shape(d)
	}
}

# A consent does not open a referral the CBO is not assigned to.
test_cbo_unassigned_referral_denied_even_with_consent if {
	c := t_consent(["cbo"], ["CAREMGT"], vocabulary.classes, ["cbo-north"])
	t_deny_shape(t_decide(t_with(t_req("cbo", "read", "referral", "none"), {"consent": c})))
}

test_cbo_new_catalog_field_withheld if {
	extended := object.union(catalog, {"referral": {"police_narrative": {"class": "free_text", "safe_harbor": null, "description": "new"}}})
	d := t_decide(t_req("cbo", "read", "referral", "assigned_cbo")) with data.crosswalk.catalog as extended
	d.fields.police_narrative == "withhold"
	d.fields["subject.phone"] == "release"
}

test_cbo_outcome_of_assigned_referral_released if {
	every rel in {"assigned_cbo", "submitter"} {
		d := t_decide(t_req("cbo", "list", "outcome", rel))
		d.effect == "allow"
		d.fields == t_all("outcome", "release")
		d.consent_used == false
	}
}

test_cbo_outcome_of_other_referral_denied if {
	every rel in {"none", "linked_health"} {
		t_deny_shape(t_decide(t_req("cbo", "read", "outcome", rel)))
	}
}

test_cbo_case_status_without_consent_denied if {
	every rel in vocabulary.relationships {
		d := t_decide(t_req("cbo", "read", "case_status", rel))
		t_deny_shape(d)
	}
}

test_cbo_case_status_under_consent_naming_cbo_kind if {
	c := t_consent(["cbo"], ["CAREMGT"], vocabulary.classes, [])
	d := t_decide(t_with(t_req("cbo", "read", "case_status", "none"), {"consent": c}))
	d.effect == "allow"
	d.fields == object.union(t_all("case_status", "release"), {"case_ref": "withhold"})
	d.consent_used == true
	d.notices == []
}

test_cbo_case_status_under_consent_covering_some_classes if {
	c := t_consent(["cbo-north"], ["CAREMGT"], ["health"], [])
	d := t_decide(t_with(t_req("cbo", "read", "case_status", "none"), {"consent": c}))
	d.effect == "allow"
	d.fields == {
		"id": "withhold", "submitted_by": "withhold", "case_ref": "withhold",
		"program": "release", "status": "release", "effective_at": "withhold",
	}
	d.consent_used == true
}

test_cbo_case_status_consent_for_another_recipient_denied if {
	every recipients in [["cbo-south"], ["health"], ["police", "county-health"]] {
		c := t_consent(recipients, ["CAREMGT"], vocabulary.classes, ["cbo-north"])
		t_deny_shape(t_decide(t_with(t_req("cbo", "read", "case_status", "none"), {"consent": c})))
	}
}

test_cbo_case_status_consent_not_covering_purpose_denied if {
	c := t_consent(["cbo"], ["TREAT", "PERFMSR"], vocabulary.classes, [])
	t_deny_shape(t_decide(t_with(t_req("cbo", "read", "case_status", "none"), {"consent": c})))
}

test_cbo_case_status_consent_not_covering_class_denied if {
	c := t_consent(["cbo"], ["CAREMGT"], ["free_text", "justice", "direct_identifier"], [])
	t_deny_shape(t_decide(t_with(t_req("cbo", "read", "case_status", "none"), {"consent": c})))
}

test_cbo_own_consent_record_released if {
	d := t_decide(t_req("cbo", "read", "consent", "submitter"))
	d.effect == "allow"
	d.fields == t_all("consent", "release")
}

test_cbo_other_consent_record_denied if {
	every rel in {"none", "assigned_cbo", "linked_health"} {
		t_deny_shape(t_decide(t_req("cbo", "read", "consent", rel)))
	}
}

test_cbo_audit_denied_unless_it_recorded_the_consent if {
	every rel in {"none", "assigned_cbo", "linked_health"} {
		t_deny_shape(t_decide(t_req("cbo", "read", "audit_entry", rel)))
	}
}

# The consent recorder's accounting: who received what under its consents, not
# the internal subject reference, the decision's wording or the chain hash.
t_recorder_accounting := object.union(t_all("audit_entry", "release"), {
	"subject_ref": "withhold",
	"reason": "withhold",
	"detail": "withhold",
	"hash": "withhold",
})

test_cbo_accounting_of_the_consents_it_recorded if {
	every action in {"read", "list"} {
		d := t_decide(t_req("cbo", action, "audit_entry", "submitter"))
		d.effect == "allow"
		d.fields == t_recorder_accounting
		d.consent_used == false
	}
}
