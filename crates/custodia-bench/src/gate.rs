//! `gate_in_process`: decisions per second of [`custodia_gate::decide`] on one thread, for the
//! largest operator policy (DeepPiano: 28 purposes, 36 categories) and a subject whose ledger
//! holds a consent for every consent purpose; the questions cycle through every purpose with its
//! categories, half from an admin key and half from a service key bound to a few purposes (so
//! allows and denials both run). The baseline is the least any decision must do: one hash lookup
//! of the purpose key in a map of the same purposes, on the same thread.

use std::collections::HashMap;
use std::hint::black_box;

use custodia_core::Timestamp;
use custodia_gate::{
    Caller, GateIndex, GateRequest, LedgerEntry, LedgerKind, SubjectFacts, decide,
};
use custodia_policy::model::LegalBasis;
use custodia_policy::{CheckedPolicy, Source};

use crate::measure::{self, Plan, Rounds};
use crate::{BenchError, Figure};

/// The largest of the four operators' policies.
const POLICY: &str = include_str!("../../../examples/deeppiano.toml");

/// The design's target: a million decisions per second per core.
const TARGET: f64 = 1_000_000.0;

struct Question {
    purpose: String,
    categories: Vec<String>,
    service: bool,
}

/// Measures the in-process gate.
///
/// # Errors
/// [`BenchError::Other`] if the example policy does not check clean.
pub fn run(plan: &Plan) -> Result<Figure, BenchError> {
    let checked = CheckedPolicy::from_source(Source::new("deeppiano.toml", POLICY))
        .map_err(|e| BenchError::Other(format!("gate bench policy: {e}")))?;
    if !checked.is_clean() {
        return Err(BenchError::Other(
            "the DeepPiano example has findings".into(),
        ));
    }
    let policy = checked.policy;
    let index = GateIndex::new(&policy, []);
    let consent_purposes: Vec<Vec<String>> = policy
        .purposes
        .iter()
        .filter(|p| *p.basis.get_ref() == LegalBasis::Consent)
        .map(|p| vec![p.key.get_ref().clone()])
        .collect();
    let facts = SubjectFacts::from_ledger(
        consent_purposes.iter().map(|purposes| LedgerEntry {
            purposes,
            kind: LedgerKind::Given,
            guardian: None,
            at: Timestamp::from_millis(1_000),
            expires_at: None,
        }),
        Some(30),
        false,
    );
    let questions: Vec<Question> = policy
        .purposes
        .iter()
        .enumerate()
        .map(|(i, p)| Question {
            purpose: p.key.get_ref().clone(),
            categories: p
                .categories
                .iter()
                .take(3)
                .map(|c| c.get_ref().clone())
                .collect(),
            service: i % 2 == 1,
        })
        .collect();
    let bound: Vec<String> = policy
        .purposes
        .iter()
        .step_by(3)
        .map(|p| p.key.get_ref().clone())
        .collect();
    let category_refs: Vec<Vec<&str>> = questions
        .iter()
        .map(|q| q.categories.iter().map(String::as_str).collect())
        .collect();
    let lookup: HashMap<String, LegalBasis> = policy
        .purposes
        .iter()
        .map(|p| (p.key.get_ref().clone(), *p.basis.get_ref()))
        .collect();
    let now = Timestamp::from_millis(10_000);
    let slice = plan.micro_slice.saturating_mul(5);
    let rounds = Rounds {
        min: 3,
        max: usize::MAX,
        budget: plan.micro_budget,
    };
    let mut allowed = 0u64;
    let (decisions, lookups) = measure::alternate(
        rounds,
        &mut || {
            measure::time(|| {
                for i in 0..slice {
                    let n = i % questions.len();
                    let (Some(question), Some(categories)) =
                        (questions.get(n), category_refs.get(n))
                    else {
                        continue;
                    };
                    let caller = if question.service {
                        Caller::Service { purposes: &bound }
                    } else {
                        Caller::Admin
                    };
                    let decision = decide(
                        &index,
                        &facts,
                        &GateRequest {
                            purpose: &question.purpose,
                            categories,
                            caller,
                            now,
                        },
                    );
                    allowed += u64::from(black_box(decision).allowed);
                }
                Ok(slice as u64)
            })
        },
        &mut || {
            measure::time(|| {
                let mut found = 0u64;
                for i in 0..slice {
                    let question = questions.get(i % questions.len());
                    if let Some(question) = question {
                        found += u64::from(black_box(lookup.get(&question.purpose)).is_some());
                    }
                }
                black_box(found);
                Ok(slice as u64)
            })
        },
    )?;
    black_box(allowed);
    let rate = measure::median_rate(&decisions);
    let baseline_rate = measure::median_rate(&lookups);
    Ok(Figure {
        name: "gate_in_process".to_owned(),
        unit: "decisions/s".to_owned(),
        rate,
        baseline: format!(
            "one HashMap lookup of the purpose key among the policy's {} purposes, same thread \
             (the least a decision must do)",
            policy.purposes.len()
        ),
        baseline_rate,
        ratio: rate / baseline_rate,
        target: format!("rate >= {TARGET} decisions/s on one core"),
        meets_target: rate >= TARGET,
    })
}
