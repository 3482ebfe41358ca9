# The release decision: what Crosswalk may give this requester, for this purpose
# of use, about this record. The gateway evaluates `data.crosswalk.decision` for
# every read and shapes the response from it; nothing leaves without it.
#
# The decision is always exactly one object:
#   {"effect": "allow" | "aggregate_only" | "deny",
#    "fields": {"<field>": "release" | "pseudonymize" | "generalize" | "withhold", ...},
#    "reason": "...", "notices": [...], "consent_used": true | false}
# `fields` lists every catalog field of the resource when effect is "allow", and
# is {} otherwise. See README.md for the input.
#
# Reading order: this file (the gates every request passes, in order), then
# fields.rego (how an "allow" is built, the 42 CFR Part 2 overlay, consent),
# then one file per partner kind.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

# Default deny: anything no rule below allows is refused.
default decision := {
	"effect": "deny",
	"fields": {},
	"reason": "no rule allows this request",
	"notices": [],
	"consent_used": false,
}

# One ordered chain: the first matching line decides, so the decision can never
# conflict. The gates come first, so that the per-kind rules only ever see a
# known kind, action, resource and relationship and a permitted purpose.
decision := deny("unknown partner kind") if {
	not input.requester.kind in vocabulary.kinds
} else := deny("unknown action") if {
	not input.action in vocabulary.actions
} else := deny("unknown resource") if {
	not known_resource
} else := deny("unknown relationship to the record") if {
	not relationship in vocabulary.relationships
} else := deny("purpose of use not permitted for this partner kind") if {
	# Each kind declares only the purposes its work needs (vocabulary.purposes_by_kind).
	not input.purpose in vocabulary.purposes_by_kind[input.requester.kind]
} else := aggregate_decision if {
	input.action == "aggregate"
} else := deny("exports are for evaluators only") if {
	input.action == "export"
	input.requester.kind != "evaluator"
} else := police_decision if {
	input.requester.kind == "police"
} else := cbo_decision if {
	input.requester.kind == "cbo"
} else := health_decision if {
	input.requester.kind == "health"
} else := evaluator_decision if {
	input.requester.kind == "evaluator"
} else := admin_decision if {
	input.requester.kind == "admin"
} else := deny("no rule allows this request")

# Aggregates: every kind may have counts (the gateway computes them with small-cell
# suppression), never record fields. Consent records and the audit log are not
# aggregated through this path.
aggregate_decision := aggregate_only("aggregates only: counts with small-cell suppression") if {
	input.resource in vocabulary.aggregate_resources
} else := deny("no aggregates for this resource")

known_resource if {
	input.resource in vocabulary.resources
	is_object(catalog[input.resource])
}

# No relationship given (e.g. an aggregate query) means "none".
relationship := input.relationship if {
	input.relationship != null
} else := "none"

# Decisions without record fields.
deny(reason) := {
	"effect": "deny",
	"fields": {},
	"reason": reason,
	"notices": [],
	"consent_used": false,
}

aggregate_only(reason) := {
	"effect": "aggregate_only",
	"fields": {},
	"reason": reason,
	"notices": [],
	"consent_used": false,
}
