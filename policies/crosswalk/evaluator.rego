# Evaluators: nothing record-level through the API. Exports are de-identified
# (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)); the gateway then applies
# k-anonymity, seals the file to the evaluator's key and uses study pseudonyms.
package crosswalk

import data.crosswalk.vocabulary
import rego.v1

evaluator_decision := deny("evaluator: nothing record-level through the API; request a de-identified export") if {
	input.action in vocabulary.record_actions
} else := allow_decision(evaluator_part2_research_export, "evaluator: de-identified export for a study configured for 42 CFR Part 2 research (42 CFR 2.52)", "program") if {
	# A Part 2 record, exported for a study with a Part 2 research agreement
	# in force (the gateway sets input.study only then). 42 CFR 2.52 lets a
	# program disclose for research without the patient's consent, so the
	# basis is "program" (no consent needed, no consent scope to explain) and
	# the redisclosure statement still goes with the data.
	input.action == "export"
	input.resource in vocabulary.export_resources
	part2_record
	input.study.part2_research == true
} else := allow_decision(evaluator_export, "evaluator: de-identified export (HIPAA Safe Harbor)", "route") if {
	input.action == "export"
	input.resource in vocabulary.export_resources
} else := deny("evaluator: this resource is not exported")

# Safe Harbor removes direct identifiers and reduces dates and geography
# (generalize); free text and justice details are not study data; substance-use
# information needs a Part 2 consent the study does not have, unless the study
# is configured for Part 2 research (evaluator_part2_research_export).
evaluator_by_class := {
	"direct_identifier": "withhold",
	"quasi_identifier": "generalize",
	"health": "release",
	"substance_use": "withhold",
	"justice": "withhold",
	"operational": "release",
	"free_text": "withhold",
}

evaluator_export := evaluator_export_view(evaluator_by_class)

# The same, with substance-use information released.
evaluator_part2_research_export := evaluator_export_view(object.union(evaluator_by_class, {"substance_use": "release"}))

evaluator_export_view(by_class_table) := object.union_n([
	by_class(by_class_table),
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
