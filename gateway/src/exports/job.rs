//! An export job's life after it was recorded: built on a blocking thread,
//! then recorded as ready (its file, manifest and disclosure entries) or as
//! failed. Starting one — the checks and the request's record — is
//! [`super::Exports::start`]'s.

use std::sync::Arc;

use super::build::Built;
use super::plan::StudyPlan;
use super::request::Job;
use super::{
    DISCLOSURE_ACTION, ExportError, Exports, FAILED_ACTION, PLAN_ACTION, PlanInfo, RESOURCE,
};
use crate::audit::{self, Event};
use crate::store::exports as repo;
use crate::store::study_plans;

impl Exports {
    /// Runs the job to its end, recording either outcome.
    pub(super) async fn run(self: Arc<Self>, job: Job) {
        let dir = self.dir();
        let partial = dir.join(format!("{}.zip.age.partial", job.id));
        // Twice at most: a build that made the study's plan but lost the race
        // to store it is built again with the plan that won.
        let mut outcome = self.attempt(&job, &partial).await;
        if matches!(outcome, Ok(Recorded::PlanSuperseded)) {
            let _ = std::fs::remove_file(&partial);
            outcome = self.attempt(&job, &partial).await;
        }
        let failure = match outcome {
            Ok(Recorded::Ready) => return,
            Ok(Recorded::PlanSuperseded) => {
                ExportError::Build("the study's plan changed twice during one export".into())
            }
            Err(e) => e,
        };
        tracing::error!(export = %job.id, error = %failure, "export failed");
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(dir.join(format!("{}.zip.age", job.id)));
        if let Err(e) = self.record_failed(&job).await {
            tracing::error!(export = %job.id, error = %e, "recording the failed export failed");
        }
    }

    /// One build with the study's plan as stored now (or a new one), and its
    /// recording.
    pub(super) async fn attempt(
        &self,
        job: &Job,
        partial: &std::path::Path,
    ) -> Result<Recorded, ExportError> {
        let study = self
            .study(&job.study_id)
            .ok_or_else(|| ExportError::Build("the study is no longer configured".into()))?;
        let stored = self.stored_plan(&job.study_id, study).await?;
        let built = self.build(job, partial, stored).await?;
        self.record_ready(job, built).await
    }

    pub(super) async fn record_failed(&self, job: &Job) -> Result<(), ExportError> {
        let mut tx = self.store.begin().await?;
        repo::finish(
            &mut tx,
            &job.id,
            "failed",
            self.clock.now().timestamp_micros(),
            None,
            None,
        )
        .await?;
        let event = Event::new(audit::GATEWAY_ACTOR, FAILED_ACTION).with_record(RESOURCE, &job.id);
        audit::append(&mut tx, &[event], self.clock.as_ref()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Publishes a built export: in one transaction, the study's plan if this
    /// build made it (and no other export stored one first), the export's
    /// state and signed manifest, its subjects and its audit entries.
    pub(super) async fn record_ready(
        &self,
        job: &Job,
        mut built: Built,
    ) -> Result<Recorded, ExportError> {
        let study = self
            .study(&job.study_id)
            .ok_or_else(|| ExportError::Build("the study is no longer configured".into()))?;
        let mut tx = self.store.begin().await?;
        let mut events = Vec::new();
        if built.plan.planned_by == job.id {
            let row = built.plan.to_row(&job.study_id, study);
            if study_plans::insert_if_absent(&mut tx, &row).await? {
                events.push(
                    Event::new(audit::GATEWAY_ACTOR, PLAN_ACTION)
                        .with_purpose(&job.purpose)
                        .with_record("study", &job.study_id)
                        .with_detail(serde_json::json!({
                            "export": job.id,
                            "mode": row.mode,
                            "quasi_identifiers": row.quasi_identifiers,
                            "k": row.k,
                            "levels": built.plan.levels(study),
                            "reference_date": row.reference_date,
                        })),
                );
            } else {
                // Another export stored the study's plan first. Publishing
                // this one with other levels would break the guarantee; with
                // the same levels and reference date it is the same file.
                let stored = study_plans::get(&mut tx, &job.study_id)
                    .await?
                    .map(|row| StudyPlan::from_row(&row, study))
                    .transpose()
                    .map_err(|detail| ExportError::PlanChanged { detail })?;
                match stored {
                    Some(stored) if stored.same_generalization(&built.plan) => {
                        built.manifest.plan = PlanInfo::of(&stored);
                    }
                    _ => return Ok(Recorded::PlanSuperseded),
                }
            }
        }
        let file_name = format!("{}.zip.age", job.id);
        let final_path = self.dir().join(&file_name);
        let jws = self
            .signer
            .sign_claims(&built.manifest)
            .map_err(|e| ExportError::Build(e.to_string()))?;
        std::fs::rename(&built.path, &final_path).map_err(|e| ExportError::Build(e.to_string()))?;
        let mut subjects = built.subjects;
        subjects.sort_unstable();
        repo::finish(
            &mut tx,
            &job.id,
            "ready",
            self.clock.now().timestamp_micros(),
            Some(&file_name),
            Some(&jws),
        )
        .await?;
        repo::insert_subjects(&mut tx, &job.id, &subjects).await?;
        events.push(
            Event::new(&job.evaluator, DISCLOSURE_ACTION)
                .with_purpose(&job.purpose)
                .with_record(RESOURCE, &job.id)
                .with_fields(built.fields)
                .with_decision(&built.manifest.policy_version, &built.reason)
                .with_detail(serde_json::json!({
                    "study": job.study_id,
                    "subjects": subjects.len(),
                    "rows": built.manifest.rows,
                    "ciphertext_blake3": built.manifest.ciphertext_blake3,
                })),
        );
        audit::append(&mut tx, &events, self.clock.as_ref()).await?;
        tx.commit().await?;
        tracing::info!(export = %job.id, subjects = subjects.len(), "export ready");
        Ok(Recorded::Ready)
    }
}

/// How [`Exports::record_ready`] ended.
pub(super) enum Recorded {
    Ready,
    /// The build made a plan for the study, but another export's was stored
    /// first, with other levels: build again with that one.
    PlanSuperseded,
}
