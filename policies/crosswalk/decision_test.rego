# Tests of the gates in decision.rego, of how fields.rego builds an "allow",
# and of the decision's shape on one request per route. Also the shared test
# helpers, prefixed t_: tests live in package crosswalk (the bundle's only root
# is "crosswalk", so `opa eval -b policies/` accepts them) and must not collide
# with the policy's own rule names. Every decision the tests need goes through
# t_decide, so that a Rust test can run them all again with the VM deciding
# (gateway/src/policy/tests/engines.rs).
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
	"record": {"part2": false, "holder": t_holder},
	"consent": null,
}

# The partner that holds the record in the tests; t_consent's consents are its
# own (their discloser), so they can open it.
t_holder := "t-holder"

# Merge a patch into a request, e.g. t_with(r, {"consent": c}).
t_with(request, patch) := object.union(request, patch)

t_part2 := {"record": {"part2": true, "holder": t_holder}}

t_consent(recipients, purposes, classes, part2_recipients) := {
	"id": "c-1",
	"recipients": recipients,
	"purposes": purposes,
	"classes": classes,
	"part2_recipients": part2_recipients,
	"discloser": t_holder,
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
	d.consent_used == false
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
	d.consent_used == false
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
	"cbo/audit_entry/submitter": "allow",
	"health/case_status/linked_health": "allow",
	"health/case_status/submitter": "allow",
	"health/consent/submitter": "allow",
	"health/audit_entry/submitter": "allow",
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
# Building an "allow" (fields.rego): only catalog fields, only known actions
# ---------------------------------------------------------------------------

# A route that names a field the catalog does not (here: one an operator
# removed) does not bring it back: the decision lists the catalog's fields.
test_a_route_cannot_add_a_field_the_catalog_lacks if {
	trimmed := json.remove(catalog, ["referral/cad_number"])
	d := t_decide(t_req("police", "read", "referral", "submitter")) with data.crosswalk.catalog as trimmed
	d.effect == "allow"
	object.keys(d.fields) == object.keys(trimmed.referral)
	d.fields.officer_id == "release"
}

# An action the vocabulary does not know leaves the field withheld (here:
# "release" taken out of the vocabulary).
test_an_unknown_field_action_leaves_the_field_withheld if {
	d := t_decide(t_req("cbo", "read", "referral", "assigned_cbo")) with data.crosswalk.vocabulary.field_actions as ["pseudonymize", "generalize", "withhold"]
	d.effect == "allow"
	d.fields == t_all("referral", "withhold")
}

# ---------------------------------------------------------------------------
# The shape of every decision. The exhaustive check, over every kind, resource,
# action, relationship, purpose, consent on file and Part 2 flag, is the Rust
# authorization matrix test (gateway/src/policy/matrix), which also renders
# MATRIX.md; it is not repeated here because these tests run at every gateway
# start. Here: one request per route and per gate, and what an unknown value
# does at each gate.
# ---------------------------------------------------------------------------

# Every decision is one object of the contract's shape.
t_well_formed(r, d) if {
	object.keys(d) == {"effect", "fields", "reason", "notices", "consent_used"}
	d.effect in {"allow", "aggregate_only", "deny"}
	is_object(d.fields)
	is_string(d.reason)
	d.reason != ""
	is_array(d.notices)
	is_boolean(d.consent_used)
	t_allow_fields_ok(r, d)
}

# "allow" lists every catalog field of the resource with a known action; the
# other effects list none, carry no notice and use no consent.
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
	d.consent_used == false
}

# A consent covering every purpose and class, naming the requester by id, also
# under Part 2.
t_broad_consent(kind) := t_consent([t_ids[kind]], t_all_purposes, vocabulary.classes, [t_ids[kind]])

t_all_purposes := sort([code | some code, _ in vocabulary.purposes])

# One request for each line of each kind's rule, with and without a consent on
# file, on a Part 2 record and not.
t_routes := [
	t_req("police", "read", "referral", "submitter"),
	t_req("police", "read", "referral", "none"),
	t_req("police", "read", "outcome", "none"),
	t_req("police", "list", "case_status", "none"),
	t_req("police", "read", "consent", "submitter"),
	t_req("cbo", "read", "referral", "assigned_cbo"),
	t_req("cbo", "list", "outcome", "submitter"),
	t_req("cbo", "read", "consent", "submitter"),
	t_req("cbo", "read", "case_status", "none"),
	t_req("cbo", "read", "referral", "none"),
	t_req("health", "read", "case_status", "submitter"),
	t_req("health", "read", "case_status", "linked_health"),
	t_req("health", "read", "consent", "submitter"),
	t_req("health", "read", "referral", "none"),
	t_req("health", "read", "audit_entry", "none"),
	t_req("evaluator", "read", "outcome", "none"),
	t_req("evaluator", "export", "referral", "none"),
	t_req("evaluator", "export", "consent", "none"),
	t_req("admin", "read", "audit_entry", "none"),
	t_req("admin", "read", "consent", "none"),
	t_req("admin", "list", "case_status", "none"),
	t_req("admin", "export", "referral", "none"),
	t_req("cbo", "aggregate", "outcome", "none"),
	t_req("cbo", "aggregate", "audit_entry", "none"),
]

t_route_variants contains r if {
	some base in t_routes
	some on_file in [null, t_broad_consent(base.requester.kind)]
	some part2 in [false, true]
	r := object.union(base, {"consent": on_file, "record": {"part2": part2}})
}

test_every_route_gives_a_well_formed_decision if {
	count(t_route_variants) == count(t_routes) * 4
	failures := {r | some r in t_route_variants; not t_well_formed(r, t_decide(r))}
	failures == set()
}

# Each gate, given an unknown value, answers with a well-formed deny, whatever
# else the request holds.
test_unknown_values_give_well_formed_denies if {
	every patch in [
		{"requester": {"id": "x", "kind": "journalist"}},
		{"action": "delete"},
		{"resource": "subject"},
		{"relationship": "owner"},
		{"purpose": "MARKETING"},
	] {
		every r in t_route_variants {
			d := t_decide(object.union(r, patch))
			t_well_formed(r, d)
			d.effect == "deny"
		}
	}
}

# The routes above reach every effect, with and without notices and consent,
# so the shape checks are not vacuous.
test_routes_reach_every_effect if {
	seen := {[d.effect, d.notices != [], d.consent_used] | some r in t_route_variants; d := t_decide(r)}
	{s[0] | some s in seen} == {"allow", "aggregate_only", "deny"}
	["allow", true, true] in seen
	["allow", true, false] in seen
	["allow", false, true] in seen
	["allow", false, false] in seen
}
