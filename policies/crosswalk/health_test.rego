# Health partners: own case status; another partner's records only under
# consent, never identifiers. Helpers (t_*) are in decision_test.rego.
package crosswalk

import data.crosswalk.vocabulary
import rego.v1

test_health_own_case_status_released if {
	every rel in {"linked_health", "submitter"} {
		every purpose in vocabulary.purposes_by_kind.health {
			d := t_decide(t_with(t_req("health", "read", "case_status", rel), {"purpose": purpose}))
			d.effect == "allow"
			d.fields == t_all("case_status", "release")
			d.notices == []
			d.consent_used == false
		}
	}
}

test_health_police_referral_without_consent_denied if {
	every rel in vocabulary.relationships {
		d := t_decide(t_req("health", "read", "referral", rel))
		t_deny_shape(d)
	}
}

test_health_outcome_without_consent_denied if {
	every rel in vocabulary.relationships {
		t_deny_shape(t_decide(t_req("health", "list", "outcome", rel)))
	}
}

test_health_other_case_status_without_consent_denied if {
	t_deny_shape(t_decide(t_req("health", "read", "case_status", "none")))
}

# Under consent: every covered class, but never a direct identifier.
test_health_referral_under_consent_without_identifiers if {
	c := t_consent(["health"], ["CAREMGT"], vocabulary.classes, [])
	d := t_decide(t_with(t_req("health", "read", "referral", "linked_health"), {"consent": c}))
	d.effect == "allow"
	d.fields == object.union(t_all("referral", "release"), {
		"cad_number": "withhold",
		"subject.given_name": "withhold",
		"subject.surname": "withhold",
		"subject.address.street": "withhold",
		"subject.phone": "withhold",
		"subject.email": "withhold",
	})
	d.consent_used == true
	d.notices == []
}

test_health_referral_under_consent_covering_health_only if {
	c := t_consent(["county-health"], ["PUBHLTH"], ["health"], [])
	d := t_decide(t_with(t_req("health", "read", "referral", "none"), {"purpose": "PUBHLTH", "consent": c}))
	d.effect == "allow"
	d.fields == object.union(t_all("referral", "withhold"), {"status": "release", "resources": "release"})
}

test_health_outcome_under_consent if {
	c := t_consent(["health"], ["CAREMGT"], ["health", "quasi_identifier"], [])
	d := t_decide(t_with(t_req("health", "read", "outcome", "none"), {"consent": c}))
	d.effect == "allow"
	d.fields == {
		"id": "withhold", "referral_id": "withhold", "recorded_by": "withhold",
		"kind": "release", "resource": "release",
		"occurred_at": "release", "notes": "withhold",
	}
	d.consent_used == true
}

test_health_other_case_status_under_consent_without_case_ref if {
	c := t_consent(["health"], ["CAREMGT"], vocabulary.classes, [])
	d := t_decide(t_with(t_req("health", "read", "case_status", "none"), {"consent": c}))
	d.effect == "allow"
	d.fields == object.union(t_all("case_status", "release"), {"case_ref": "withhold"})
	d.consent_used == true
}

test_health_consent_for_another_recipient_denied if {
	every recipients in [["police"], ["cbo", "cbo-north"], ["other-health"]] {
		c := t_consent(recipients, ["CAREMGT"], vocabulary.classes, ["county-health"])
		t_deny_shape(t_decide(t_with(t_req("health", "read", "referral", "none"), {"consent": c})))
	}
}

test_health_consent_not_covering_purpose_denied if {
	c := t_consent(["health"], ["TREAT"], vocabulary.classes, [])
	t_deny_shape(t_decide(t_with(t_req("health", "read", "referral", "none"), {"consent": c})))
}

# Covering only direct identifiers opens nothing: they never cross.
test_health_consent_not_covering_class_denied if {
	c := t_consent(["health"], ["CAREMGT"], ["direct_identifier"], [])
	t_deny_shape(t_decide(t_with(t_req("health", "read", "referral", "none"), {"consent": c})))
}

test_health_own_consent_record_released if {
	d := t_decide(t_req("health", "read", "consent", "submitter"))
	d.effect == "allow"
	d.fields == t_all("consent", "release")
}

test_health_other_consent_record_and_audit_denied if {
	t_deny_shape(t_decide(t_req("health", "read", "consent", "none")))
	t_deny_shape(t_decide(t_req("health", "read", "audit_entry", "none")))
}

test_health_accounting_of_the_consents_it_recorded if {
	d := t_decide(t_req("health", "list", "audit_entry", "submitter"))
	d.effect == "allow"
	d.fields == t_recorder_accounting
	every rel in {"assigned_cbo", "linked_health"} {
		t_deny_shape(t_decide(t_req("health", "list", "audit_entry", rel)))
	}
}
