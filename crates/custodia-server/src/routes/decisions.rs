//! `POST /v1/decisions`: the gate alone, without touching any data, for one question or a batch
//! of them. A batch is decided against one policy snapshot and audited in one commit.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use custodia_core::SubjectId;
use custodia_gate::Decision;
use custodia_vault::Ask;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{ApiJson, Authenticated};

/// The most questions one batch may hold.
pub const MAX_BATCH: usize = 1000;

/// One question: may this subject's data of these categories be used for this purpose?
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Whose data.
    #[schema(value_type = String, pattern = "^sub_[0-9a-fA-F]{32}$")]
    pub subject: SubjectId,
    /// For which purpose.
    pub purpose: String,
    /// Which categories.
    #[schema(min_items = 1)]
    pub categories: Vec<String>,
}

/// Several questions at once.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The questions, answered in order.
    #[schema(min_items = 1, max_items = 1000)]
    pub requests: Vec<Question>,
}

/// One question, or a batch (a body with `requests`).
#[derive(Debug, Clone, ToSchema)]
#[serde(untagged)]
pub enum DecisionRequest {
    /// A batch.
    Batch(Batch),
    /// One question.
    One(Question),
}

/// The gate's answer to one question.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionView {
    /// Allowed or not.
    pub allowed: bool,
    /// The denials, or the legal basis that allows it (`consent.missing`, `basis.contract`...).
    pub reasons: Vec<String>,
}

/// The answers, in the order of the questions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Decisions {
    /// One answer per question.
    pub decisions: Vec<DecisionView>,
}

/// The body as it is decoded, in one pass: the fields of one question and of a batch side by
/// side (the documented shape is [`DecisionRequest`]; the two accept the same bodies).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    subject: Option<SubjectId>,
    purpose: Option<String>,
    categories: Option<Vec<String>>,
    requests: Option<Vec<Question>>,
}

impl DecisionBody {
    /// A body with `requests` is a batch and holds nothing else; anything else is one question
    /// with all three fields.
    fn into_request(self) -> Result<DecisionRequest, ApiError> {
        let missing = |field: &str| ApiError::InvalidBody {
            field: field.to_owned(),
            reason: "missing".into(),
        };
        match self {
            Self {
                requests: Some(requests),
                subject: None,
                purpose: None,
                categories: None,
            } => Ok(DecisionRequest::Batch(Batch { requests })),
            Self {
                requests: Some(_), ..
            } => Err(ApiError::InvalidBody {
                field: "requests".into(),
                reason: "a batch holds only `requests`".into(),
            }),
            Self {
                subject,
                purpose,
                categories,
                requests: None,
            } => Ok(DecisionRequest::One(Question {
                subject: subject.ok_or_else(|| missing("subject"))?,
                purpose: purpose.ok_or_else(|| missing("purpose"))?,
                categories: categories.ok_or_else(|| missing("categories"))?,
            })),
        }
    }
}

/// The answers as they are written: [`Decisions`]' JSON, borrowed from the decisions rather than
/// copied into views first (every answer is written once and dropped).
struct Answers<'a>(&'a [Decision]);

/// One answer as it is written: [`DecisionView`]'s JSON.
struct Answer<'a>(&'a Decision);

impl Serialize for Answers<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut answers = serializer.serialize_struct("Decisions", 1)?;
        answers.serialize_field("decisions", &Seq(self.0))?;
        answers.end()
    }
}

struct Seq<'a>(&'a [Decision]);

impl Serialize for Seq<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Answer))
    }
}

impl Serialize for Answer<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut answer = serializer.serialize_struct("DecisionView", 2)?;
        answer.serialize_field("allowed", &self.0.allowed)?;
        answer.serialize_field("reasons", &Codes(self.0))?;
        answer.end()
    }
}

struct Codes<'a>(&'a Decision);

impl Serialize for Codes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.reasons.iter().map(|reason| reason.code()))
    }
}

impl From<&Decision> for DecisionView {
    fn from(decision: &Decision) -> Self {
        Self {
            allowed: decision.allowed,
            reasons: decision.codes().into_iter().map(str::to_owned).collect(),
        }
    }
}

fn check(index: Option<usize>, question: &Question) -> Result<(), ApiError> {
    if question.categories.is_empty() {
        let field = index.map_or_else(
            || "categories".to_owned(),
            |i| format!("requests[{i}].categories"),
        );
        return Err(ApiError::InvalidBody {
            field,
            reason: "name at least one category".into(),
        });
    }
    Ok(())
}

/// Asks the gate, for one question or a batch; every decision is audited.
#[utoipa::path(
    post,
    path = "/v1/decisions",
    operation_id = "decide",
    tag = "decisions",
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "The decisions, in order", body = Decisions),
        (status = 404, description = "A subject does not exist", body = ErrorBody),
        (status = 422, description = "The body is invalid, or the batch too large (`request.batch_too_large`)", body = ErrorBody),
    )
)]
pub async fn decide(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Response, ApiError> {
    let questions = match body.into_request()? {
        DecisionRequest::One(question) => {
            check(None, &question)?;
            vec![question]
        }
        DecisionRequest::Batch(batch) => {
            if batch.requests.len() > MAX_BATCH {
                return Err(ApiError::BatchTooLarge { limit: MAX_BATCH });
            }
            if batch.requests.is_empty() {
                return Err(ApiError::InvalidBody {
                    field: "requests".into(),
                    reason: "name at least one question".into(),
                });
            }
            for (index, question) in batch.requests.iter().enumerate() {
                check(Some(index), question)?;
            }
            batch.requests
        }
    };
    let asks: Vec<Ask> = questions
        .into_iter()
        .map(|q| Ask {
            subject: q.subject,
            purpose: q.purpose,
            categories: q.categories,
        })
        .collect();
    // Subjects whose facts are cached are decided in memory; otherwise read them on the pool.
    let decisions = match state.vault().try_decide_cached(&asks, &caller) {
        Some(answer) => answer?,
        None => {
            let vault = state.vault().clone();
            blocking(move || Ok(vault.decide_many(&asks, &caller)?)).await?
        }
    };
    state.metrics().observe_decisions(&decisions);
    Ok(Json(Answers(&decisions)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodia_gate::Reason;

    #[test]
    fn answers_are_written_as_the_documented_views() {
        let decisions = vec![
            Decision {
                allowed: true,
                reasons: vec![Reason::BasisConsent],
            },
            Decision {
                allowed: false,
                reasons: vec![Reason::ConsentMissing, Reason::KeyNotBound],
            },
            Decision {
                allowed: false,
                reasons: Vec::new(),
            },
        ];
        let views = Decisions {
            decisions: decisions.iter().map(DecisionView::from).collect(),
        };
        assert_eq!(
            serde_json::to_string(&Answers(&decisions)).unwrap(),
            serde_json::to_string(&views).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&Answers(&[])).unwrap(),
            r#"{"decisions":[]}"#
        );
    }
}
