//! Enforcement: what `release_view` lets out of a record, and how.

use serde_json::{Value, json};

use super::{TestBundle, input, pseudonymizer, referral_record};
use crate::config::PartnerKind;
use crate::domain::PartnerId;
use crate::policy::*;

fn pid(text: &str) -> PartnerId {
    PartnerId::parse(text).expect("a partner id")
}

#[test]
fn release_view_applies_each_action_and_drops_what_is_not_named() {
    let policy = TestBundle::new().load().expect("loads");
    let pseudonyms = pseudonymizer();
    let audience = pid("admin");
    let shaper = FieldShaper::for_partner(&pseudonyms, &audience);
    let admin = policy.decide(&input(PartnerKind::Admin, Action::Read, Resource::Referral));

    let view = release_view(&admin, &referral_record(), &shaper).expect("allowed");

    assert_eq!(
        view.as_json(),
        &json!({
            "id": "r-1",
            "status": "engaged",
            "submitted_by": "pd",
            "subject": {"dob": "1987", "address": {"zip": "958", "city": "Sacramento"}},
            "contact_at": "2026-03",
        })
    );
    let debug = format!("{view:?}");
    assert!(!debug.contains("Sacramento"), "{debug}");
}

#[test]
fn release_view_reads_dotted_records_and_pseudonymizes_per_requester() {
    let policy = TestBundle::new().load().expect("loads");
    let pseudonyms = pseudonymizer();
    let cbo = policy.decide(&input(PartnerKind::Cbo, Action::Read, Resource::Referral));
    let dotted = json!({
        "id": "r-1",
        "submitted_by": "pd",
        "cad_number": "CAD-1",
        "subject.given_name": "Quinn",
        "subject.address": {"zip": "95814"},
    });

    let north = release_view(
        &cbo,
        &dotted,
        &FieldShaper::for_partner(&pseudonyms, &pid("cbo-north")),
    )
    .expect("allowed");
    let south = release_view(
        &cbo,
        &dotted,
        &FieldShaper::for_partner(&pseudonyms, &pid("cbo-south")),
    )
    .expect("allowed");

    let view = north.as_json();
    assert_eq!(view["subject"]["given_name"], "Quinn");
    assert_eq!(view["subject"]["address"]["zip"], "95814");
    assert!(view.get("cad_number").is_none(), "withheld");
    let pseudonym = view["submitted_by"].as_str().expect("pseudonymized");
    assert!(pseudonym.starts_with("cwf-"), "{pseudonym}");
    assert_ne!(pseudonym, south.as_json()["submitted_by"], "per requester");
    let again = release_view(
        &cbo,
        &dotted,
        &FieldShaper::for_partner(&pseudonyms, &pid("cbo-north")),
    )
    .expect("allowed");
    assert_eq!(again.as_json()["submitted_by"], pseudonym, "stable");
}

#[test]
fn pseudonymized_record_ids_still_join_across_resources() {
    let pseudonyms = pseudonymizer();
    let shaper = FieldShaper::for_study(&pseudonyms, "demo-study");
    let value = json!("r-42");
    let referral_id = shaper.pseudonymize(
        resources::PseudonymKind::Record(Resource::Referral),
        "id",
        &value,
    );
    let outcome_referral_id = shaper.pseudonymize(
        resources::PseudonymKind::Record(Resource::Referral),
        "referral_id",
        &value,
    );
    let outcome_id = shaper.pseudonymize(
        resources::PseudonymKind::Record(Resource::Outcome),
        "id",
        &value,
    );

    assert_eq!(referral_id, outcome_referral_id);
    assert_ne!(referral_id, outcome_id);
    assert_ne!(referral_id, Some(value));
    let other_study = FieldShaper::for_study(&pseudonyms, "other-study").pseudonymize(
        resources::PseudonymKind::Record(Resource::Referral),
        "id",
        &json!("r-42"),
    );
    assert_ne!(referral_id, other_study);
}

#[test]
fn notices_travel_with_the_view() {
    let policy = TestBundle::new().load().expect("loads");
    let mut question = input(PartnerKind::Cbo, Action::Read, Resource::Referral);
    question.record.part2 = true;
    let decision = policy.decide(&question);

    let view = release_view(
        &decision,
        &referral_record(),
        &FieldShaper::for_study(&pseudonymizer(), "demo-study"),
    )
    .expect("allowed");

    assert_eq!(view.as_json()[NOTICES_KEY], json!(["Part 2 notice"]));
}

#[test]
fn no_view_without_allow() {
    let policy = TestBundle::new().load().expect("loads");
    let pseudonyms = pseudonymizer();
    let audience = pid("pd");
    let shaper = FieldShaper::for_partner(&pseudonyms, &audience);
    for (action, effect) in [
        (Action::Read, Effect::Deny),
        (Action::Aggregate, Effect::AggregateOnly),
    ] {
        let decision = policy.decide(&input(PartnerKind::Police, action, Resource::Referral));
        let e = release_view(&decision, &referral_record(), &shaper).expect_err("no view");
        assert_eq!(e.effect, effect);
    }
}

#[test]
fn generalization_withholds_values_not_in_the_expected_form() {
    use release::generalize;
    use resources::Generalization::{Withhold, Year, YearMonth, Zip3};
    let cases = [
        (YearMonth, json!("2026-03-31"), Some(json!("2026-03"))),
        (
            YearMonth,
            json!("2026-03-31T23:00:00-08:00"),
            Some(json!("2026-03")),
        ),
        (YearMonth, json!("31/03/2026"), None),
        (YearMonth, json!("2026-02-30"), None),
        (Year, json!("1987-03-14"), Some(json!("1987"))),
        (Year, json!(1987), None),
        (Zip3, json!("95814"), Some(json!("958"))),
        (Zip3, json!("95814-1234"), Some(json!("958"))),
        (Zip3, json!("9581"), None),
        (Zip3, json!("ABCDE"), None),
        (Withhold, json!("anything"), None),
        (Year, Value::Null, Some(Value::Null)),
    ];
    for (generalization, value, expected) in cases {
        assert_eq!(
            generalize(generalization, &value),
            expected,
            "{generalization:?} {value}"
        );
    }
}

#[test]
fn no_field_name_is_a_prefix_of_another() {
    // release_view nests dotted names; a leaf that is also a parent would clash.
    for resource in Resource::ALL {
        for a in resource.fields() {
            for b in resource.fields() {
                assert!(
                    !b.name.starts_with(&format!("{}.", a.name)),
                    "{resource}: {} and {}",
                    a.name,
                    b.name
                );
            }
        }
    }
}
