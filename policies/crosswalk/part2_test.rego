# Substance-use information (42 CFR Part 2): a Part 2 record reaches a
# requester only under a Part 2 consent of the program that holds it, naming
# the recipient and covering the purpose; never police. Without one the record
# is absent (denied as a whole, the kind's fallback answering), never released
# with its substance-use fields withheld — those blanks would mark the person
# as a patient (§2.13). Every release carries the §2.32 notices and names the
# consent. Helpers (t_*) are in decision_test.rego.
package crosswalk

import data.crosswalk.vocabulary
import rego.v1

t_part2_consent(part2_recipients, purposes) := t_consent(["cbo", "health"], purposes, vocabulary.classes, part2_recipients)

t_cbo_part2_referral(c) := t_with(t_req("cbo", "read", "referral", "assigned_cbo"), object.union(t_part2, {"consent": c}))

test_part2_without_consent_absent if {
	d := t_decide(t_with(t_req("cbo", "read", "referral", "assigned_cbo"), t_part2))
	t_deny_shape(d)
	d.reason == part2_absent_reason
}

test_part2_with_consent_naming_recipient_released_with_notices if {
	d := t_decide(t_cbo_part2_referral(t_part2_consent(["cbo-north"], ["CAREMGT"])))
	d.effect == "allow"
	d.fields.status == "release"
	d.fields.resources == "release"
	d.notices == [
		vocabulary.notices.part2_redisclosure,
		"Scope of the patient's consent (42 CFR 2.32(b)): the patient's consent permits disclosure of this record to cbo-north for these purposes of use: CAREMGT.",
	]
	d.consent_used == true
}

# §2.31: a Part 2 consent names the recipient; a partner kind is not enough.
test_part2_consent_naming_only_the_kind_absent if {
	t_deny_shape(t_decide(t_cbo_part2_referral(t_part2_consent(["cbo"], ["CAREMGT"]))))
}

test_part2_consent_naming_another_recipient_absent if {
	t_deny_shape(t_decide(t_cbo_part2_referral(t_part2_consent(["cbo-south", "county-health"], ["CAREMGT"]))))
}

test_part2_consent_not_covering_purpose_absent if {
	t_deny_shape(t_decide(t_cbo_part2_referral(t_part2_consent(["cbo-north"], ["TREAT"]))))
}

# §2.31: the consent names the program that discloses. A Part 2 consent
# recorded by anyone but the record's holder opens nothing of it, however it
# names the recipient (otherwise a CBO could grant itself county health's
# substance-use cases this way).
test_part2_consent_of_another_discloser_absent if {
	c := object.union(t_part2_consent(["cbo-north"], ["CAREMGT"]), {"discloser": "cbo-north"})
	t_deny_shape(t_decide(t_cbo_part2_referral(c)))
	d := t_decide(t_with(t_req("cbo", "read", "case_status", "none"), object.union(t_part2, {"consent": c})))
	t_deny_shape(d)
}

# The Part 2 flag protects every resource, not only case status.
test_part2_outcome_of_assigned_referral if {
	t_deny_shape(t_decide(t_with(t_req("cbo", "read", "outcome", "assigned_cbo"), t_part2)))
	with_consent := t_decide(t_with(t_req("cbo", "read", "outcome", "assigned_cbo"), object.union(t_part2, {"consent": t_part2_consent(["cbo-north"], ["CAREMGT"])})))
	with_consent.fields.kind == "release"
	count(with_consent.notices) == 2
	with_consent.consent_used == true
}

# Returning a program's own records to it is not a disclosure under 42 CFR
# Part 2: the health partner that submitted a Part 2 case status sees all of
# it, with the redisclosure statement (no consent was used, so there is no
# consent scope to explain), whatever consent is or is not on file.
test_part2_health_submitter_sees_its_own_case_status if {
	every c in [null, t_part2_consent(["someone-else"], ["TREAT"]), t_part2_consent(["county-health"], ["CAREMGT"])] {
		d := t_decide(t_with(t_req("health", "read", "case_status", "submitter"), object.union(t_part2, {"consent": c})))
		d.effect == "allow"
		d.fields == t_all("case_status", "release")
		d.notices == [vocabulary.notices.part2_redisclosure]
		d.consent_used == false
		d.reason == "health: case status it submitted"
	}
}

# Only its own: the same partner linked to the person, but not the submitter of
# this case status, still needs a Part 2 consent naming it.
test_part2_health_linked_case_status_needs_part2_consent if {
	t_deny_shape(t_decide(t_with(t_req("health", "read", "case_status", "linked_health"), t_part2)))
	c := t_part2_consent(["county-health"], ["CAREMGT"])
	with_consent := t_decide(t_with(t_req("health", "read", "case_status", "linked_health"), object.union(t_part2, {"consent": c})))
	with_consent.fields.program == "release"
	with_consent.fields.status == "release"
	count(with_consent.notices) == 2
	with_consent.consent_used == true
}

# Under a consent route the Part 2 check alone opens substance-use fields; the
# other fields still follow the consent's classes.
test_part2_cbo_case_status_under_consent if {
	c := t_consent(["cbo"], ["CAREMGT"], ["operational"], ["cbo-north"])
	d := t_decide(t_with(t_req("cbo", "read", "case_status", "none"), object.union(t_part2, {"consent": c})))
	d.effect == "allow"
	d.fields == {
		"id": "release", "submitted_by": "release", "case_ref": "withhold",
		"program": "release", "status": "release", "effective_at": "withhold",
	}
	count(d.notices) == 2
	d.consent_used == true
}

test_part2_cbo_case_status_without_part2_naming_absent if {
	c := t_consent(["cbo"], ["CAREMGT"], ["operational", "health"], [])
	d := t_decide(t_with(t_req("cbo", "read", "case_status", "none"), object.union(t_part2, {"consent": c})))
	t_deny_shape(d)
}

test_part2_never_to_police if {
	c := t_consent(["police", "pd"], vocabulary.purposes_by_kind.police, vocabulary.classes, ["pd", "police"])
	every resource in {"referral", "outcome", "case_status"} {
		every rel in vocabulary.relationships {
			d := t_decide(t_with(t_req("police", "read", resource, rel), object.union(t_part2, {"consent": c})))
			d.effect in {"deny", "aggregate_only"}
			d.fields == {}
		}
	}
}

# A record that is not flagged Part 2 carries no notice, consent or not.
test_part2_no_notice_without_the_flag if {
	d := t_decide(t_with(t_req("cbo", "read", "referral", "assigned_cbo"), {"consent": t_part2_consent(["cbo-north"], ["CAREMGT"])}))
	d.fields.status == "release"
	d.notices == []
	d.consent_used == false
}

test_part2_admin_with_part2_consent_gets_notices if {
	c := t_consent(["admin"], ["HOPERAT"], vocabulary.classes, ["admin"])
	d := t_decide(t_with(t_req("admin", "read", "case_status", "none"), object.union(t_part2, {"consent": c})))
	d.fields.program == "release"
	d.notices[0] == vocabulary.notices.part2_redisclosure
	d.consent_used == true
}
