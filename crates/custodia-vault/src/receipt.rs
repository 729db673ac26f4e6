//! Consent receipts: each consent-ledger event as a record shaped after ISO/IEC TS 27560 (the
//! consent record information structure) and as a Kantara Initiative Consent Receipt v1.1, both
//! built from the event and the policy it was given under. Pseudonymous ids only.

use custodia_policy::Policy;
use custodia_policy::model::{Category, LegalBasis};
use custodia_store::{ConsentEventKind, ConsentRow};
use serde_json::{Value, json};

fn basis_name(basis: LegalBasis) -> &'static str {
    match basis {
        LegalBasis::Consent => "consent",
        LegalBasis::Contract => "contract",
        LegalBasis::LegitimateInterest => "legitimate_interest",
        LegalBasis::LegalObligation => "legal_obligation",
        LegalBasis::VitalInterest => "vital_interest",
        LegalBasis::PublicInterest => "public_interest",
    }
}

fn retention_words(policy: &Policy, category: &str) -> Option<String> {
    policy.retention_for(category).map(|rule| {
        format!(
            "{} {}",
            rule.keep.get_ref().to_words(),
            rule.after.to_words()
        )
    })
}

fn recipients(policy: &Policy, purpose: &str) -> Vec<String> {
    policy
        .processors
        .iter()
        .filter(|p| p.purposes.iter().any(|k| k.get_ref() == purpose))
        .map(|p| p.name.get_ref().clone())
        .collect()
}

fn categories_of<'a>(policy: &'a Policy, purpose: &str) -> Vec<&'a Category> {
    policy
        .purpose(purpose)
        .map(|p| {
            p.categories
                .iter()
                .filter_map(|c| policy.category(c.get_ref()))
                .collect()
        })
        .unwrap_or_default()
}

/// The event as a consent record shaped after ISO/IEC TS 27560.
pub fn iso_27560(policy: &Policy, event: &ConsentRow) -> Value {
    let controller = &policy.controller;
    let purposes: Vec<Value> = event
        .purposes
        .iter()
        .map(|key| {
            let declared = policy.purpose(key);
            let categories = categories_of(policy, key);
            json!({
                "purpose": key,
                "name": declared.map(|p| p.display_name().to_owned()),
                "legal_basis": declared.map(|p| basis_name(*p.basis.get_ref())),
                "data_use": declared.and_then(|p| p.data_use.as_ref().map(|u| u.get_ref().clone())),
                "personal_data": categories.iter().map(|c| c.key.get_ref().clone()).collect::<Vec<_>>(),
                "sensitive_data": categories.iter().filter(|c| c.sensitive).map(|c| c.key.get_ref().clone()).collect::<Vec<_>>(),
                "retention": categories.iter().map(|c| json!({
                    "category": c.key.get_ref(),
                    "period": retention_words(policy, c.key.get_ref()),
                })).collect::<Vec<_>>(),
                "recipients": recipients(policy, key),
                "optional": declared.is_some_and(|p| p.optional),
            })
        })
        .collect();
    json!({
        "schema": "ISO/IEC TS 27560:2023 consent record (Custodia profile v1)",
        "record_id": event.id.to_string(),
        "timestamp": event.at.to_string(),
        "data_subject": event.subject.to_string(),
        "controller": {
            "name": controller.name.get_ref(),
            "product": controller.product.get_ref(),
            "contact": controller.contact.email.as_deref().or(controller.contact.web.as_deref()),
        },
        "notice": {
            "policy_version": event.policy_version,
            "jurisdiction_laws": policy.laws.iter().map(|l| l.get_ref().name()).collect::<Vec<_>>(),
            "data_location": policy.data_location.get_ref(),
        },
        "purposes": purposes,
        "consent": {
            "state": event.kind.as_str(),
            "method": event.method,
            "expires_at": event.expires_at.map(|t| t.to_string()),
            "given_by": if event.guardian.is_some() { "guardian" } else { "data_subject" },
            "guardian": event.guardian.map(|g| g.to_string()),
            "guardian_verified": event.guardian.map(|_| event.guardian_verified),
            "bundled": event.purposes.len() > 1,
        },
    })
}

/// The event as a Kantara Initiative Consent Receipt v1.1.
pub fn kantara(policy: &Policy, event: &ConsentRow, jurisdiction: &str) -> Value {
    let controller = &policy.controller;
    let mut sensitive = Vec::new();
    let purposes: Vec<Value> = event
        .purposes
        .iter()
        .map(|key| {
            let declared = policy.purpose(key);
            let categories = categories_of(policy, key);
            sensitive.extend(categories.iter().filter(|c| c.sensitive).map(|c| c.key.get_ref().clone()));
            let third_parties = recipients(policy, key);
            json!({
                "purpose": declared.map_or_else(|| key.clone(), |p| p.display_name().to_owned()),
                "purposeCategory": declared
                    .and_then(|p| p.data_use.as_ref().map(|u| vec![u.get_ref().clone()]))
                    .unwrap_or_default(),
                "consentType": if event.guardian.is_some() { "EXPLICIT (guardian)" } else { "EXPLICIT" },
                "piiCategory": categories.iter().map(|c| c.display_name().to_owned()).collect::<Vec<_>>(),
                "primaryPurpose": declared.is_some_and(|p| !p.optional),
                "termination": categories
                    .first()
                    .and_then(|c| retention_words(policy, c.key.get_ref()))
                    .unwrap_or_else(|| "until withdrawn".to_owned()),
                "thirdPartyDisclosure": !third_parties.is_empty(),
                "thirdPartyName": third_parties.join(", "),
            })
        })
        .collect();
    sensitive.sort();
    sensitive.dedup();
    json!({
        "version": "KI-CR-v1.1.0",
        "jurisdiction": jurisdiction,
        "consentTimestamp": event.at.as_millis() / 1000,
        "collectionMethod": event.method,
        "consentReceiptID": event.id.to_string(),
        "language": "en",
        "piiPrincipalId": event.subject.to_string(),
        "piiControllers": [{
            "piiController": controller.name.get_ref(),
            "onBehalf": false,
            "contact": controller.contact.email.as_deref().or(controller.contact.phone.as_deref()).unwrap_or(""),
            "address": controller.address.as_deref().or(controller.contact.address.as_deref()).unwrap_or(""),
            "email": controller.contact.email.as_deref().unwrap_or(""),
            "phone": controller.contact.phone.as_deref().unwrap_or(""),
        }],
        "policyUrl": format!("policy version {}", event.policy_version),
        "services": [{ "service": controller.product.get_ref(), "purposes": purposes }],
        "sensitive": !sensitive.is_empty(),
        "spiCat": sensitive,
        "state": event.kind.as_str(),
        "withdrawn": event.kind == ConsentEventKind::Withdrawn,
    })
}
