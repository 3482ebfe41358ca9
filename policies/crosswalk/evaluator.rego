# Evaluators: nothing record-level through the API. Exports are de-identified
# (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)); the gateway then applies
# k-anonymity, seals the file to the evaluator's key and uses study pseudonyms.
package crosswalk

import data.crosswalk.vocabulary
import rego.v1

evaluator_decision := deny("evaluator: nothing record-level through the API; request a de-identified export") if {
	input.action in vocabulary.record_actions
} else := allow_decision(evaluator_export, "evaluator: de-identified export (HIPAA Safe Harbor)", "route") if {
	input.action == "export"
	input.resource in vocabulary.export_resources
} else := deny("evaluator: this resource is not exported")

# Safe Harbor removes direct identifiers and reduces dates and geography
# (generalize); free text and justice details are not study data; substance-use
# information needs a Part 2 consent the study does not have.
evaluator_by_class := {
	"direct_identifier": "withhold",
	"quasi_identifier": "generalize",
	"health": "release",
	"substance_use": "withhold",
	"justice": "withhold",
	"operational": "release",
	"free_text": "withhold",
}

evaluator_export := object.union_n([
	by_class(evaluator_by_class),
	# Which police department or CBO handled a record is not study data.
	{name: "pseudonymize" | some name in {"submitted_by", "recorded_by"}; classes[name] == "operational"},
	# Gateway record ids are used outside the study (Safe Harbor (R)); a study
	# pseudonym of them still joins outcomes to referrals within the export.
	# Added to the contract, which released them.
	{name: "pseudonymize" |
		some name, spec in fields
		spec.safe_harbor == "other_unique_number"
		classes[name] == "operational"
	},
]) if {
	classes := field_class
	fields := resource_fields
}
