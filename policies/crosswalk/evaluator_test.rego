# Evaluators: no record-level reads; de-identified exports. Helpers (t_*) are in
# decision_test.rego.
package crosswalk

import data.crosswalk.vocabulary
import rego.v1

test_evaluator_record_level_reads_denied if {
	every action in {"read", "list"} {
		every resource in vocabulary.resources {
			every rel in vocabulary.relationships {
				d := t_decide(t_req("evaluator", action, resource, rel))
				t_deny_shape(d)
			}
		}
	}
}

# Even a consent naming the evaluator does not open the API.
test_evaluator_read_denied_even_with_consent if {
	c := t_consent(["evaluator"], ["HRESCH"], vocabulary.classes, ["evaluator"])
	t_deny_shape(t_decide(t_with(t_req("evaluator", "read", "outcome", "none"), {"consent": c})))
}

test_evaluator_export_referral_safe_harbor if {
	every purpose in vocabulary.purposes_by_kind.evaluator {
		d := t_decide(t_with(t_req("evaluator", "export", "referral", "none"), {"purpose": purpose}))
		d.effect == "allow"
		d.fields == {
			"id": "pseudonymize",
			"workflow_state": "release",
			"status": "release",
			"created_at": "generalize",
			"submitted_by": "pseudonymize",
			"assigned_cbo": "release",
			"subject_pseudonym": "release",
			"cad_number": "withhold",
			"officer_id": "withhold",
			"subject.given_name": "withhold",
			"subject.surname": "withhold",
			"subject.dob": "generalize",
			"subject.sex": "generalize",
			"subject.address.street": "withhold",
			"subject.address.city": "generalize",
			"subject.address.state": "generalize",
			"subject.address.zip": "generalize",
			"subject.phone": "withhold",
			"subject.email": "withhold",
			"contact_at": "generalize",
			"district": "generalize",
			"arrested": "withhold",
			"circumstances": "withhold",
			"resources": "release",
			"follow_up_by": "release",
		}
		d.notices == []
		d.consent_used == false
	}
}

test_evaluator_export_outcome if {
	d := t_decide(t_req("evaluator", "export", "outcome", "none"))
	d.fields == {
		"id": "pseudonymize", "referral_id": "pseudonymize", "recorded_by": "pseudonymize",
		"kind": "release", "resource": "release",
		"occurred_at": "generalize", "notes": "withhold",
	}
}

test_evaluator_export_case_status if {
	d := t_decide(t_req("evaluator", "export", "case_status", "none"))
	d.fields == {
		"id": "pseudonymize", "submitted_by": "pseudonymize", "case_ref": "withhold",
		"program": "release", "status": "release", "effective_at": "generalize",
	}
}

# A Part 2 record never goes into an export through this rule, not even hollow
# under a Part 2 consent naming the evaluator: its row is left out whole.
test_evaluator_export_leaves_part2_records_out if {
	c := t_consent(["evaluator"], ["HRESCH"], vocabulary.classes, ["evaluator"])
	d := t_decide(t_with(t_req("evaluator", "export", "case_status", "none"), object.union(t_part2, {"consent": c})))
	t_deny_shape(d)
}

# A study configured for 42 CFR Part 2 research (input.study) gets a Part 2
# record whole, with the redisclosure statement and no consent used; the flag
# changes nothing on other records, and without it nothing changes at all.
test_evaluator_export_part2_research_study if {
	research := {"study": {"part2_research": true}}
	d := t_decide(t_with(t_req("evaluator", "export", "case_status", "none"), object.union(t_part2, research)))
	d.effect == "allow"
	d.fields.program == "release"
	d.fields.status == "release"
	d.fields.case_ref == "withhold"
	d.fields.submitted_by == "pseudonymize"
	d.notices == [vocabulary.notices.part2_redisclosure]
	d.consent_used == false
	ordinary := t_decide(t_req("evaluator", "export", "case_status", "none"))
	t_decide(t_with(t_req("evaluator", "export", "case_status", "none"), research)) == ordinary
	not_research := t_decide(t_with(t_req("evaluator", "export", "case_status", "none"), object.union(t_part2, {"study": {"part2_research": false}})))
	t_deny_shape(not_research)
}

test_evaluator_export_of_consents_and_audit_denied if {
	every resource in {"consent", "audit_entry"} {
		d := t_decide(t_req("evaluator", "export", resource, "none"))
		t_deny_shape(d)
		d.reason == "evaluator: this resource is not exported"
	}
}

test_evaluator_export_needs_a_research_purpose if {
	every purpose in {"TREAT", "CAREMGT", "HOPERAT", "PUBHLTH"} {
		t_deny_shape(t_decide(t_with(t_req("evaluator", "export", "referral", "none"), {"purpose": purpose})))
	}
}
