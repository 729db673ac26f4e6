//! Running the retention sweeper now (admin keys only), beside its schedule: every record and
//! media object whose expiry has passed and that no legal hold keeps is deleted and audited with
//! its rule, or, in a dry run, counted and left alone. The answer has counts only.

use axum::Json;
use axum::extract::State;
use custodia_vault::SweepReport;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ServerState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Admin, ApiJson};
use crate::sweeper::{SweepTrigger, Sweeper};

/// How to sweep.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSweep {
    /// Count what would be deleted and delete nothing; `false` when absent.
    #[serde(default)]
    pub dry_run: bool,
}

/// Deleted (or due) records and media objects of one category under one retention rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleCount {
    /// The category.
    pub category: String,
    /// The retention rule's id.
    pub rule: String,
    /// How many.
    pub count: u64,
}

/// What a sweep did, or in a dry run would do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SweepView {
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Expired records and media objects deleted (or due, in a dry run).
    pub deleted: u64,
    /// Of `deleted`, the media objects (a dry run does not tell them apart: 0 there).
    pub media_deleted: u64,
    /// Expired records and media objects that legal holds keep.
    pub held: u64,
    /// Deleted (or due) records and media objects per category and rule.
    pub by_rule: Vec<RuleCount>,
}

impl From<SweepReport> for SweepView {
    fn from(report: SweepReport) -> Self {
        Self {
            dry_run: report.dry_run,
            deleted: report.deleted,
            media_deleted: report.media_deleted,
            held: report.held,
            by_rule: report
                .by_rule
                .into_iter()
                .map(|((category, rule), count)| RuleCount {
                    category,
                    rule,
                    count,
                })
                .collect(),
        }
    }
}

/// Runs a retention sweep now (admin keys only).
#[utoipa::path(
    post,
    path = "/v1/sweeps",
    operation_id = "runSweep",
    tag = "retention",
    request_body = StartSweep,
    responses(
        (status = 200, description = "Swept (or counted, in a dry run)", body = SweepView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
    )
)]
pub async fn run(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<StartSweep>,
) -> Result<Json<SweepView>, ApiError> {
    let report = Sweeper::new(&state)
        .sweep(body.dry_run, admin.actor(), SweepTrigger::Request)
        .await?;
    Ok(Json(report.into()))
}
