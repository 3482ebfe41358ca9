# The catalog and vocabulary are data an operator edits: these tests keep them
# consistent with each other and with the rules.
package crosswalk

import data.crosswalk.catalog
import data.crosswalk.vocabulary
import rego.v1

test_catalog_covers_exactly_the_vocabulary_resources if {
	object.keys(catalog) == {r | some r in vocabulary.resources}
}

test_catalog_fields_have_known_classes if {
	every _, fields in catalog {
		every _, spec in fields {
			spec.class in vocabulary.classes
		}
	}
}

test_catalog_safe_harbor_kinds_are_known if {
	every _, fields in catalog {
		every _, spec in fields {
			t_safe_harbor_ok(spec)
		}
	}
}

t_safe_harbor_ok(spec) if spec.safe_harbor == null

t_safe_harbor_ok(spec) if spec.safe_harbor in vocabulary.safe_harbor_kinds

test_direct_identifiers_name_their_safe_harbor_kind if {
	every _, fields in catalog {
		every _, spec in fields {
			t_direct_identifier_kind_ok(spec)
		}
	}
}

t_direct_identifier_kind_ok(spec) if spec.class != "direct_identifier"

t_direct_identifier_kind_ok(spec) if {
	spec.class == "direct_identifier"
	spec.safe_harbor in vocabulary.safe_harbor_kinds
}

test_catalog_fields_are_described if {
	every _, fields in catalog {
		every _, spec in fields {
			is_string(spec.description)
			spec.description != ""
		}
	}
}

# substance_use is a class records acquire (the Part 2 flag), not one a field
# is declared with: the overlay in fields.rego is what protects it.
test_no_field_declared_substance_use if {
	every _, fields in catalog {
		every _, spec in fields {
			spec.class != "substance_use"
		}
	}
}

test_contract_fields_present if {
	object.keys(catalog.referral) == {
		"id", "workflow_state", "status", "created_at", "submitted_by", "assigned_cbo", "subject_pseudonym",
		"cad_number", "officer_id", "subject.given_name", "subject.surname", "subject.dob", "subject.sex",
		"subject.address.street", "subject.address.city", "subject.address.state", "subject.address.zip",
		"subject.phone", "subject.email", "contact_at", "district", "arrested", "circumstances", "resources",
		"follow_up_by",
	}
	object.keys(catalog.outcome) == {"id", "referral_id", "recorded_by", "kind", "resource", "occurred_at", "notes"}
	object.keys(catalog.case_status) == {"id", "submitted_by", "case_ref", "program", "status", "effective_at"}
	object.keys(catalog.consent) == {
		"id", "referral_id", "case_id", "recipients", "purposes", "classes", "method", "recorded_by",
		"discloser", "period_start", "period_end", "evidence_hash", "revoked_at", "part2",
	}
	object.keys(catalog.audit_entry) == {
		"seq", "at", "actor", "action", "purpose", "resource", "record_id", "subject_ref",
		"fields", "policy_version", "reason", "consent_id", "detail", "hash",
	}
}

test_every_kind_has_purposes_from_the_vocabulary if {
	object.keys(vocabulary.purposes_by_kind) == {k | some k in vocabulary.kinds}
	every _, purposes in vocabulary.purposes_by_kind {
		count(purposes) > 0
		every p in purposes {
			vocabulary.purposes[p]
		}
	}
}

test_aggregate_and_export_resources_are_known if {
	every r in array.concat(vocabulary.aggregate_resources, vocabulary.export_resources) {
		r in vocabulary.resources
	}
}

test_part2_notices_present if {
	contains(vocabulary.notices.part2_redisclosure, "42 CFR part 2")
	# two %s: the recipient and the consent's purposes (never the consent's
	# id: the decision does not depend on which consent it is)
	count(split(vocabulary.notices.part2_consent_scope, "%s")) == 3
}
