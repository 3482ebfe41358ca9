//! `policies/MATRIX.md` from the decided matrix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{Case, KINDS, OnFile, kind_rank, permitted_purposes};
use crate::policy::catalog::ResourcePlan;
use crate::policy::snapshot::Snapshot;
use crate::policy::{Action, Decision, Effect, FieldAction, Relationship, Resource};

pub(super) fn render(decided: &BTreeMap<Case, Decision>, snapshot: &Snapshot) -> String {
    let mut out = String::from(
        "# Authorization matrix\n\n\
         Generated from the policy bundle in this folder by\n\
         `UPDATE_MATRIX=1 cargo test -p crosswalk matrix` (gateway/src/policy/matrix.rs),\n\
         which also checks every decision against the baseline rules in README.md and\n\
         fails when this file is stale. Do not edit it by hand.\n\n\
         Every resource × action × partner kind × purpose of use × relationship to the\n\
         record × consent on file × Part 2 flag is evaluated. A read path answers a\n\
         request the matrix denies with 404, so that existence is not revealed.\n\n\
         ## Purposes of use\n\n\
         | kind | may declare |\n|---|---|\n",
    );
    for kind in KINDS {
        let _ = writeln!(out, "| {kind} | {} |", permitted_purposes(kind).join(", "));
    }
    out.push_str(
        "\nAny other purpose: **deny**, for every resource, action and relationship.\n\n\
         ## Effects\n\n\
         With a permitted purpose. \"With consent\" means an active consent recorded by\n\
         the record's holder (its discloser), naming the requester (by id or kind) and\n\
         covering the purpose and the fields' classes; a consent naming only other\n\
         partners, or recorded by a partner that does not hold the record, changes\n\
         nothing. On a record without Part 2 information; a Part 2 record is released\n\
         whole or not at all (see the last two sections).\n",
    );
    for resource in Resource::ALL {
        render_effects(&mut out, decided, resource);
    }
    out.push_str(
        "\n## Fields\n\n\
         What each `allow` route does with each field, with a permitted purpose on a\n\
         record without Part 2 information: **R** release, **P** pseudonymize,\n\
         **G** generalize, **W** withhold. A column lists the relationships and actions\n\
         that share it.\n\n\
         On a Part 2 record every `health` field counts as substance use, and the\n\
         record is released whole or not at all: it is absent (the kind's fallback\n\
         answers: deny, or aggregate_only for police) unless the holder's consent\n\
         names the requester under 42 CFR Part 2 (never police) and the route\n\
         releases every substance-use field (an export never does), and then it\n\
         travels with the two §2.32 notices; the health partner that submitted a\n\
         case status gets its own record back whole (see the last section).\n",
    );
    for resource in Resource::ALL {
        render_fields(&mut out, decided, snapshot.catalog_plan(resource));
    }
    render_part2(&mut out, decided);
    out
}

fn render_effects(out: &mut String, decided: &BTreeMap<Case, Decision>, resource: Resource) {
    let _ = write!(
        out,
        "\n### {resource}\n\n| kind | relationship | read | list | aggregate | export |\n|---|---|---|---|---|---|\n"
    );
    for kind in KINDS {
        for relationship in Relationship::ALL {
            let cells: Vec<String> = Action::ALL
                .iter()
                .map(|action| {
                    effect_cell(decided.iter().filter(|(case, _)| {
                        case.resource == resource
                            && case.kind == kind
                            && case.relationship == relationship
                            && case.action == *action
                            && !case.part2
                            && permitted_purposes(kind).contains(&case.purpose)
                    }))
                })
                .collect();
            let _ = writeln!(
                out,
                "| {kind} | {} | {} |",
                relationship.as_str(),
                cells.join(" | ")
            );
        }
    }
}

/// One cell: the effect, or how consent, purpose or Part 2 change it.
fn effect_cell<'a>(decisions: impl Iterator<Item = (&'a Case, &'a Decision)>) -> String {
    let mut by_consent: BTreeMap<bool, BTreeSet<Effect>> = BTreeMap::new();
    for (case, decision) in decisions {
        by_consent
            .entry(case.on_file.applies())
            .or_default()
            .insert(decision.effect);
    }
    let show = |effects: &BTreeSet<Effect>| {
        effects
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let without = by_consent.get(&false).cloned().unwrap_or_default();
    let with = by_consent.get(&true).cloned().unwrap_or_default();
    let varies = if without.len() > 1 || with.len() > 1 {
        " (varies by purpose)"
    } else {
        ""
    };
    if without == with {
        format!("{}{varies}", show(&without))
    } else {
        format!("{}; with consent: {}{varies}", show(&without), show(&with))
    }
}

/// The field actions of one kind of `allow`, and where it applies.
#[derive(Default)]
struct Route {
    applies: BTreeSet<(Relationship, Action)>,
    fields: BTreeMap<String, FieldAction>,
}

impl Route {
    /// `read/list · submitter`, or each pair when they do not form a grid.
    fn label(&self) -> String {
        let relationships: BTreeSet<Relationship> = self.applies.iter().map(|(r, _)| *r).collect();
        let actions: BTreeSet<Action> = self.applies.iter().map(|(_, a)| *a).collect();
        if relationships.len() * actions.len() == self.applies.len() {
            let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            format!(
                "{} · {}",
                actions.join("/"),
                relationships_label(&relationships)
            )
        } else {
            let pairs: Vec<String> = self
                .applies
                .iter()
                .map(|(r, a)| format!("{} · {}", a.as_str(), r.as_str()))
                .collect();
            pairs.join(", ")
        }
    }
}

fn relationships_label(relationships: &BTreeSet<Relationship>) -> String {
    if relationships.len() == Relationship::ALL.len() {
        "any relationship".to_owned()
    } else {
        let names: Vec<&str> = relationships.iter().map(|r| r.as_str()).collect();
        names.join(", ")
    }
}

fn render_fields(out: &mut String, decided: &BTreeMap<Case, Decision>, plan: &ResourcePlan) {
    // Columns: one per distinct field map of a kind (with or without consent).
    let mut routes: BTreeMap<(usize, bool, Vec<FieldAction>), Route> = BTreeMap::new();
    for (case, decision) in decided {
        let representative = permitted_purposes(case.kind)
            .first()
            .is_some_and(|p| *p == case.purpose);
        let consent_shown = matches!(case.on_file, OnFile::Nothing | OnFile::Covering);
        if case.resource != plan.resource
            || decision.effect != Effect::Allow
            || case.part2
            || !representative
            || !consent_shown
        {
            continue;
        }
        let with_consent = decision.consent_used;
        let key = (
            kind_rank(case.kind),
            with_consent,
            decision.fields.values().copied().collect(),
        );
        let route = routes.entry(key).or_default();
        route.applies.insert((case.relationship, case.action));
        route.fields.clone_from(&decision.fields);
    }
    if routes.is_empty() {
        return;
    }
    let _ = write!(out, "\n### {}\n\n| field | class |", plan.resource);
    for ((kind, with_consent, _), route) in &routes {
        let kind = KINDS[*kind];
        let consent = if *with_consent { ", with consent" } else { "" };
        let _ = write!(out, " {kind}{consent}: {} |", route.label());
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(routes.len()));
    out.push('\n');
    for (name, entry) in &plan.fields {
        let _ = write!(out, "| {name} | {} |", entry.class);
        for route in routes.values() {
            let letter = match route.fields.get(*name) {
                Some(FieldAction::Release) => "R",
                Some(FieldAction::Pseudonymize) => "P",
                Some(FieldAction::Generalize) => "G",
                Some(FieldAction::Withhold) | None => "W",
            };
            let _ = write!(out, " {letter} |");
        }
        out.push('\n');
    }
}

fn render_part2(out: &mut String, decided: &BTreeMap<Case, Decision>) {
    // (resource, kind) -> relationships, for disclosures under a Part 2 consent
    // and for a program's own records.
    let mut under_consent: BTreeMap<(Resource, usize), BTreeSet<Relationship>> = BTreeMap::new();
    let mut own_records: BTreeMap<(Resource, usize), BTreeSet<Relationship>> = BTreeMap::new();
    for (case, decision) in decided {
        if case.part2 && !decision.notices.is_empty() {
            let routes = if decision.consent_used {
                &mut under_consent
            } else {
                &mut own_records
            };
            routes
                .entry((case.resource, kind_rank(case.kind)))
                .or_default()
                .insert(case.relationship);
        }
    }
    out.push_str(
        "\n## Substance-use information (42 CFR Part 2)\n\n\
         Routes that disclose it on a Part 2 record under a consent naming the\n\
         requester under Part 2, each time with the two §2.32 notices:\n\n",
    );
    for ((resource, kind), relationships) in under_consent {
        let _ = writeln!(
            out,
            "- {resource}: {} ({})",
            KINDS[kind],
            relationships_label(&relationships)
        );
    }
    out.push_str(
        "\nA program's own records, returned to it without any consent (not a\n\
         disclosure under 42 CFR Part 2), with the redisclosure statement only:\n\n",
    );
    for ((resource, kind), relationships) in own_records {
        let _ = writeln!(
            out,
            "- {resource}: {} ({})",
            KINDS[kind],
            relationships_label(&relationships)
        );
    }
}
