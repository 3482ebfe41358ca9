# Police: own referrals; outcomes only in aggregate or under consent; never
# substance-use information. Helpers (t_*) are in decision_test.rego.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

test_police_own_referral_released_except_status if {
	every action in {"read", "list"} {
		d := t_decide(t_req("police", action, "referral", "submitter"))
		d.effect == "allow"
		d.fields == object.union(t_all("referral", "release"), {"status": "withhold"})
		d.notices == []
		d.consent_used == false
	}
}

test_police_own_referral_with_perfmsr_purpose if {
	d := t_decide(t_with(t_req("police", "read", "referral", "submitter"), {"purpose": "PERFMSR"}))
	d.fields.workflow_state == "release"
	d.fields.status == "withhold"
}

test_police_other_police_referral_denied if {
	every rel in {"none", "assigned_cbo", "linked_health"} {
		d := t_decide(t_with(t_req("police", "read", "referral", rel), {"requester": {"id": "pd-east", "kind": "police"}}))
		t_deny_shape(d)
		d.reason == "police: not its own referral"
	}
}

# A consent on file does not widen what police see of their own referral, nor
# open someone else's.
test_police_referral_ignores_consent if {
	c := t_consent(["police"], ["CAREMGT"], vocabulary.classes, ["pd"])
	own := t_decide(t_with(t_req("police", "read", "referral", "submitter"), {"consent": c}))
	own.fields.status == "withhold"
	own.consent_used == false
	other := t_decide(t_with(t_req("police", "read", "referral", "none"), {"consent": c}))
	t_deny_shape(other)
}

test_police_outcomes_without_consent_aggregate_only if {
	every resource in {"outcome", "case_status"} {
		every rel in vocabulary.relationships {
			d := t_decide(t_req("police", "read", resource, rel))
			d.effect == "aggregate_only"
			d.fields == {}
			d.consent_used == false
		}
	}
}

test_police_outcome_under_consent_naming_police_kind if {
	c := t_consent(["police"], ["CAREMGT"], ["operational", "health"], [])
	d := t_decide(t_with(t_req("police", "list", "outcome", "submitter"), {"consent": c}))
	d.effect == "allow"
	d.fields == {
		"id": "release", "referral_id": "release", "recorded_by": "release",
		"kind": "release", "resource": "release",
		"occurred_at": "withhold", "notes": "withhold",
	}
	d.consent_used == true
	d.notices == []
}

test_police_outcome_under_consent_naming_partner_id if {
	c := t_consent(["pd"], ["CAREMGT", "PERFMSR"], ["health", "quasi_identifier", "free_text"], [])
	d := t_decide(t_with(t_req("police", "read", "outcome", "none"), {"consent": c}))
	d.effect == "allow"
	d.fields == {
		"id": "withhold", "referral_id": "withhold", "recorded_by": "withhold",
		"kind": "release", "resource": "release",
		"occurred_at": "release", "notes": "release",
	}
	d.consent_used == true
}

test_police_consent_for_another_recipient_aggregate_only if {
	every recipients in [["pd-east"], ["cbo"], ["health", "cbo-north"], []] {
		c := t_consent(recipients, ["CAREMGT"], vocabulary.classes, [])
		d := t_decide(t_with(t_req("police", "read", "outcome", "submitter"), {"consent": c}))
		d.effect == "aggregate_only"
		d.consent_used == false
	}
}

test_police_consent_not_covering_purpose_aggregate_only if {
	c := t_consent(["police"], ["PERFMSR"], vocabulary.classes, [])
	d := t_decide(t_with(t_req("police", "read", "outcome", "submitter"), {"consent": c}))
	d.effect == "aggregate_only"
}

test_police_consent_not_covering_any_class_aggregate_only if {
	c := t_consent(["police"], ["CAREMGT"], ["justice", "direct_identifier"], [])
	d := t_decide(t_with(t_req("police", "read", "outcome", "submitter"), {"consent": c}))
	d.effect == "aggregate_only"
	d.consent_used == false
}

# A malformed consent (lists that are not arrays) opens nothing.
test_police_malformed_consent_aggregate_only if {
	c := {"id": "c-1", "recipients": "police", "purposes": "CAREMGT", "classes": "health"}
	d := t_decide(t_with(t_req("police", "read", "outcome", "submitter"), {"consent": c}))
	d.effect == "aggregate_only"
}

# Added to the contract: the health partner's case number never reaches police,
# even under a consent that lists direct identifiers.
test_police_case_status_under_consent_without_case_ref if {
	c := t_consent(["police"], ["CAREMGT"], vocabulary.classes, [])
	d := t_decide(t_with(t_req("police", "read", "case_status", "none"), {"consent": c}))
	d.effect == "allow"
	d.fields == object.union(t_all("case_status", "release"), {"case_ref": "withhold"})
	d.consent_used == true
}

# 42 CFR §2.32: substance-use information never reaches police, whatever the
# consent says.
test_police_never_get_substance_use_even_with_part2_consent if {
	c := t_consent(["police", "pd"], ["CAREMGT"], vocabulary.classes, ["pd", "police"])
	d := t_decide(t_with(t_req("police", "read", "case_status", "none"), object.union(t_part2, {"consent": c})))
	d.effect == "aggregate_only"
	d.fields == {}
}

test_police_part2_record_under_health_only_consent_aggregate_only if {
	c := t_consent(["police"], ["CAREMGT"], ["health", "substance_use"], ["pd"])
	d := t_decide(t_with(t_req("police", "read", "case_status", "none"), object.union(t_part2, {"consent": c})))
	d.effect == "aggregate_only"
}

test_police_part2_outcome_absent if {
	c := t_consent(["police"], ["CAREMGT"], ["operational", "health"], ["pd"])
	d := t_decide(t_with(t_req("police", "read", "outcome", "submitter"), object.union(t_part2, {"consent": c})))
	d.effect == "aggregate_only"
	d.fields == {}
}

test_police_own_part2_referral_absent if {
	d := t_decide(t_with(t_req("police", "read", "referral", "submitter"), t_part2))
	t_deny_shape(d)
}

# A consent opens only the records of the partner that recorded it:
# the same consent recorded by a CBO does not open a case status county health
# holds, and a record with no holder (or an input without one) is opened by no
# consent.
test_police_consent_of_another_discloser_opens_nothing if {
	c := t_consent(["police"], ["CAREMGT"], vocabulary.classes, [])
	own := t_decide(t_with(t_req("police", "read", "case_status", "none"), {"consent": c}))
	own.effect == "allow"
	elsewhere := object.union(c, {"discloser": "cbo-north"})
	d := t_decide(t_with(t_req("police", "read", "case_status", "none"), {"consent": elsewhere}))
	d.effect == "aggregate_only"
	no_holder := t_with(t_req("police", "read", "case_status", "none"), {"consent": c, "record": {"part2": false, "holder": null}})
	t_decide(no_holder).effect == "aggregate_only"
	missing := json.remove(t_with(t_req("police", "read", "outcome", "none"), {"consent": c}), ["record/holder"])
	t_decide(missing).effect == "aggregate_only"
	no_discloser := t_with(t_req("police", "read", "outcome", "none"), {"consent": json.remove(c, ["discloser"])})
	t_decide(no_discloser).effect == "aggregate_only"
}

# A field an operator adds to the catalog stays withheld from police until a
# rule names it.
test_police_new_catalog_field_withheld if {
	extended := object.union(catalog, {"referral": {"cbo_case_notes": {"class": "free_text", "safe_harbor": null, "description": "new"}}})
	d := t_decide(t_req("police", "read", "referral", "submitter")) with data.crosswalk.catalog as extended
	d.fields.cbo_case_notes == "withhold"
	count(d.fields) == count(catalog.referral) + 1
}

test_police_consent_and_audit_denied if {
	every resource in {"consent", "audit_entry"} {
		every rel in vocabulary.relationships {
			t_deny_shape(t_decide(t_req("police", "read", resource, rel)))
		}
	}
}
