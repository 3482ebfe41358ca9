# Tests of the gates in decision.rego, the decision's shape, and the properties
# every decision must have, checked over a matrix of inputs. Also the shared test
# helpers, prefixed t_: tests live in package crosswalk (the bundle's only root
# is "crosswalk", so `opa eval -b policies/` accepts them) and must not collide
# with the policy's own rule names.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Example partners, one per kind, and a purpose each kind may use.
t_ids := {"police": "pd", "cbo": "cbo-north", "health": "county-health", "evaluator": "evaluator", "admin": "admin"}

t_purpose := {"police": "CAREMGT", "cbo": "CAREMGT", "health": "CAREMGT", "evaluator": "HRESCH", "admin": "HOPERAT"}

t_req(kind, action, resource, rel) := {
	"requester": {"id": t_ids[kind], "kind": kind},
	"purpose": t_purpose[kind],
	"action": action,
	"resource": resource,
	"relationship": rel,
	"record": {"part2": false},
	"consent": null,
}

# Merge a patch into a request, e.g. t_with(r, {"consent": c}).
t_with(request, patch) := object.union(request, patch)

t_part2 := {"record": {"part2": true}}

t_consent(recipients, purposes, classes, part2_recipients) := {
	"id": "c-1",
	"recipients": recipients,
	"purposes": purposes,
	"classes": classes,
	"part2_recipients": part2_recipients,
}

t_decide(request) := d if {
	d := decision with input as request
}

# Every field of a resource mapped to one action; patch some with object.union.
t_all(resource, action) := {name: action | some name, _ in catalog[resource]}

t_deny_shape(d) if {
	d.effect == "deny"
	d.fields == {}
	d.notices == []
	d.consent_id == null
}

# ---------------------------------------------------------------------------
# Default deny and the gates
# ---------------------------------------------------------------------------

test_default_is_deny if {
	d := t_decide({})
	t_deny_shape(d)
}

test_no_input_is_deny if {
	t_deny_shape(decision)
}

test_unknown_kind_denied if {
	r := t_with(t_req("police", "read", "referral", "submitter"), {"requester": {"id": "x", "kind": "journalist"}})
	d := t_decide(r)
	t_deny_shape(d)
	d.reason == "unknown partner kind"
}

test_missing_requester_denied if {
	r := object.remove(t_req("admin", "read", "audit_entry", "none"), ["requester"])
	d := t_decide(r)
	t_deny_shape(d)
	d.reason == "unknown partner kind"
}

test_unknown_action_denied if {
	d := t_decide(t_req("police", "delete", "referral", "submitter"))
	t_deny_shape(d)
	d.reason == "unknown action"
}

test_unknown_resource_denied if {
	d := t_decide(t_req("admin", "read", "subject", "none"))
	t_deny_shape(d)
	d.reason == "unknown resource"
}

# A resource the vocabulary names but the catalog lacks is unknown too: a field
# the catalog does not name is never released.
test_resource_missing_from_catalog_denied if {
	d := t_decide(t_req("admin", "read", "audit_entry", "none")) with data.crosswalk.catalog as object.remove(catalog, ["audit_entry"])
	t_deny_shape(d)
	d.reason == "unknown resource"
}

test_unknown_relationship_denied if {
	d := t_decide(t_req("police", "read", "referral", "owner"))
	t_deny_shape(d)
	d.reason == "unknown relationship to the record"
}

test_missing_relationship_means_none if {
	r := object.remove(t_req("police", "read", "referral", "none"), ["relationship"])
	t_decide(r).reason == "police: not its own referral"
	a := object.remove(t_req("police", "aggregate", "outcome", "none"), ["relationship"])
	t_decide(a).effect == "aggregate_only"
	n := t_with(t_req("police", "aggregate", "outcome", "none"), {"relationship": null})
	t_decide(n).effect == "aggregate_only"
}

test_purpose_not_allowed_for_kind_denied if {
	every kind, purposes in vocabulary.purposes_by_kind {
		every purpose, _ in vocabulary.purposes {
			t_purpose_denied_unless_listed(kind, purpose, purposes)
		}
	}
}

t_purpose_denied_unless_listed(_, purpose, purposes) if purpose in purposes

t_purpose_denied_unless_listed(kind, purpose, purposes) if {
	not purpose in purposes
	d := t_decide(t_with(t_req(kind, "aggregate", "referral", "none"), {"purpose": purpose}))
	t_deny_shape(d)
	d.reason == "purpose of use not permitted for this partner kind"
}

test_every_listed_purpose_passes_the_gate if {
	every kind, purposes in vocabulary.purposes_by_kind {
		every purpose in purposes {
			t_decide(t_with(t_req(kind, "aggregate", "referral", "none"), {"purpose": purpose})).effect == "aggregate_only"
		}
	}
}

test_missing_purpose_denied if {
	d := t_decide(object.remove(t_req("cbo", "read", "referral", "assigned_cbo"), ["purpose"]))
	t_deny_shape(d)
	d.reason == "purpose of use not permitted for this partner kind"
}

test_unknown_purpose_code_denied if {
	d := t_decide(t_with(t_req("cbo", "read", "referral", "assigned_cbo"), {"purpose": "MARKETING"}))
	t_deny_shape(d)
}

# The purposes are data an operator can change without touching the rules.
test_purposes_are_operator_data if {
	r := t_with(t_req("police", "read", "referral", "submitter"), {"purpose": "PERFMSR"})
	t_decide(r).effect == "allow"
	d := t_decide(r) with data.crosswalk.vocabulary.purposes_by_kind.police as ["CAREMGT"]
	t_deny_shape(d)
}

# ---------------------------------------------------------------------------
# Aggregates and exports
# ---------------------------------------------------------------------------

test_aggregate_only_for_every_kind if {
	every kind, _ in t_ids {
		every resource in vocabulary.aggregate_resources {
			d := t_decide(t_req(kind, "aggregate", resource, "none"))
			d == aggregate_only("aggregates only: counts with small-cell suppression")
		}
	}
}

test_aggregate_ignores_relationship_and_consent if {
	r := t_with(t_req("police", "aggregate", "outcome", "submitter"), {"consent": t_consent(["police"], ["CAREMGT"], vocabulary.classes, [])})
	d := t_decide(r)
	d.effect == "aggregate_only"
	d.fields == {}
	d.consent_id == null
}

test_no_aggregates_of_consents_or_audit if {
	every kind, _ in t_ids {
		every resource in {"consent", "audit_entry"} {
			d := t_decide(t_req(kind, "aggregate", resource, "none"))
			t_deny_shape(d)
			d.reason == "no aggregates for this resource"
		}
	}
}

test_exports_only_for_evaluators if {
	every kind in {"police", "cbo", "health", "admin"} {
		every resource in vocabulary.resources {
			d := t_decide(t_req(kind, "export", resource, "submitter"))
			t_deny_shape(d)
			d.reason == "exports are for evaluators only"
		}
	}
}

# ---------------------------------------------------------------------------
# The read matrix without consent: kind x resource x relationship -> effect.
# Everything not listed here is denied.
# ---------------------------------------------------------------------------

t_read_without_consent := {
	"police/referral/submitter": "allow",
	"police/outcome/*": "aggregate_only",
	"police/case_status/*": "aggregate_only",
	"cbo/referral/assigned_cbo": "allow",
	"cbo/outcome/assigned_cbo": "allow",
	"cbo/outcome/submitter": "allow",
	"cbo/consent/submitter": "allow",
	"health/case_status/linked_health": "allow",
	"health/case_status/submitter": "allow",
	"health/consent/submitter": "allow",
	"admin/referral/*": "allow",
	"admin/outcome/*": "allow",
	"admin/case_status/*": "allow",
	"admin/consent/*": "allow",
	"admin/audit_entry/*": "allow",
}

t_expected_read(kind, resource, rel) := e if {
	e := t_read_without_consent[concat("/", [kind, resource, rel])]
} else := e if {
	e := t_read_without_consent[concat("/", [kind, resource, "*"])]
} else := "deny"

test_read_matrix_without_consent if {
	every kind, _ in t_ids {
		every resource in vocabulary.resources {
			every rel in vocabulary.relationships {
				t_decide(t_req(kind, "read", resource, rel)).effect == t_expected_read(kind, resource, rel)
			}
		}
	}
}

# ---------------------------------------------------------------------------
# Properties of every decision, over a matrix of inputs: every kind (and an
# unknown one) x resource (and an unknown one) x action (and an unknown one) x
# relationship x an allowed and a disallowed purpose x no consent / a broad
# consent naming the requester (also under Part 2) / a consent for someone else
# x a Part 2 record or not.
# ---------------------------------------------------------------------------

t_matrix contains r if {
	some kind in array.concat(vocabulary.kinds, ["stranger"])
	some resource in array.concat(vocabulary.resources, ["subject"])
	some action in array.concat(vocabulary.actions, ["delete"])
	some rel in vocabulary.relationships
	some purpose in {object.get(t_purpose, kind, "CAREMGT"), "PATRQT"}
	some on_file in t_matrix_consents(kind)
	some part2 in {false, true}
	r := {
		"requester": {"id": object.get(t_ids, kind, "stranger-1"), "kind": kind},
		"purpose": purpose,
		"action": action,
		"resource": resource,
		"relationship": rel,
		"record": {"part2": part2},
		"consent": on_file,
	}
}

t_matrix_consents(kind) := [
	null,
	t_consent([object.get(t_ids, kind, "stranger-1")], t_all_purposes, vocabulary.classes, [object.get(t_ids, kind, "stranger-1")]),
	t_consent(["someone-else"], t_all_purposes, vocabulary.classes, ["someone-else"]),
]

t_all_purposes := sort([code | some code, _ in vocabulary.purposes])

# Every decision is one object of the contract's shape.
t_well_formed(r, d) if {
	object.keys(d) == {"effect", "fields", "reason", "notices", "consent_id"}
	d.effect in {"allow", "aggregate_only", "deny"}
	is_object(d.fields)
	is_string(d.reason)
	d.reason != ""
	is_array(d.notices)
	t_allow_fields_ok(r, d)
}

# "allow" lists every catalog field of the resource with a known action; the
# other effects list none.
t_allow_fields_ok(r, d) if {
	d.effect == "allow"
	object.keys(d.fields) == object.keys(catalog[r.resource])
	every action in d.fields {
		action in vocabulary.field_actions
	}
}

t_allow_fields_ok(_, d) if {
	d.effect != "allow"
	d.fields == {}
	d.notices == []
	d.consent_id == null
}

# Notices are present exactly when a substance-use field is disclosed.
t_discloses_part2(r, d) if {
	r.record.part2 == true
	some name, action in d.fields
	catalog[r.resource][name].class == "health"
	action != "withhold"
}

t_notices_ok(r, d) if {
	t_discloses_part2(r, d)
	d.notices == [vocabulary.notices.part2_redisclosure, sprintf(vocabulary.notices.part2_consent_scope, [r.consent.id, r.requester.id, concat(", ", sort(r.consent.purposes))])]
}

t_notices_ok(r, d) if {
	not t_discloses_part2(r, d)
	d.notices == []
}

# The decision names the consent exactly when the consent opened something:
# the same request without it would have released less.
t_consent_id_ok(r, d) if {
	d.consent_id == null
	not t_consent_opened(r, d)
}

t_consent_id_ok(r, d) if {
	d.consent_id == r.consent.id
	d.effect == "allow"
	t_consent_opened(r, d)
}

t_consent_opened(r, d) if {
	r.consent != null
	without := t_decide(object.union(r, {"consent": null}))
	without.fields != d.fields
}

# Police never receive a substance-use field.
t_police_no_part2(r, _) if r.requester.kind != "police"

t_police_no_part2(r, d) if {
	r.requester.kind == "police"
	not t_discloses_part2(r, d)
}

test_matrix_covers_every_combination if {
	count(t_matrix) == ((((6 * 6) * 5) * 4) * 2) * 6
}

# Each property test collects the inputs whose decision breaks it (none when it holds).
test_every_decision_is_well_formed if {
	failures := {r | some r in t_matrix; not t_well_formed(r, t_decide(r))}
	failures == set()
}

test_notices_present_exactly_when_substance_use_disclosed if {
	failures := {r | some r in t_matrix; not t_notices_ok(r, t_decide(r))}
	failures == set()
}

test_consent_id_only_when_consent_opened_record_level_data if {
	failures := {r | some r in t_matrix; not t_consent_id_ok(r, t_decide(r))}
	failures == set()
}

test_police_never_receive_substance_use_in_matrix if {
	failures := {r | some r in t_matrix; not t_police_no_part2(r, t_decide(r))}
	failures == set()
}

# The matrix reaches each effect, so the properties above are not vacuous.
test_matrix_reaches_every_effect if {
	seen := {[d.effect, d.notices != [], d.consent_id != null] | some r in t_matrix; d := t_decide(r)}
	{s[0] | some s in seen} == {"allow", "aggregate_only", "deny"}
	["allow", true, true] in seen
	["allow", false, true] in seen
	["allow", false, false] in seen
}
