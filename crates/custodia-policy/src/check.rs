//! The policy checker: cross-references, the fideslang taxonomy, and the lint rules that the
//! laws a policy declares (PIPL, GDPR, CCPA, COPPA, China's Cybersecurity Law and app rules)
//! impose on it. Each finding carries a stable code, the file position, the key it concerns and,
//! for a legal rule, the article it comes from.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use serde::Serialize;
use toml::Spanned;

use crate::duration::{Deadline, PolicyDuration};
use crate::model::{Key, Law, LegalBasis, Policy, Right};
use crate::source::{Location, Source};
use crate::taxonomy;

/// How serious a finding is. Both make `custodia policy check` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The file is inconsistent or breaks a law it declares.
    Error,
    /// The file is probably wrong and needs a human look.
    Warning,
}

/// One problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable identifier, for example `retention.missing`.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in a sentence.
    pub message: String,
    /// Where in the file.
    pub location: Location,
    /// The key path concerned, for example `purpose.ai_transcription.categories`.
    pub key: String,
    /// The legal source of the rule, when the rule comes from a law.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
}

/// Legal sources cited by the rules, kept together so the wording is uniform.
pub mod sources {
    /// Retention limited to what the purpose needs.
    pub const RETENTION: &str = "PIPL Art. 19; GDPR Art. 5(1)(e)";
    /// Separate consent for sensitive data.
    pub const SENSITIVE_CONSENT: &str = "PIPL Art. 29; GDPR Art. 9(2)(a)";
    /// Refusing consent must not block the service.
    pub const CONSENT_FREELY_GIVEN: &str = "PIPL Art. 16; GDPR Art. 7(4)";
    /// Data given to others only within a stated purpose.
    pub const SHARING_PURPOSE: &str = "PIPL Art. 6, Art. 23; GDPR Art. 5(1)(b)-(c)";
    /// The policy's own promise not to share a category.
    pub const NEVER_SHARED: &str = "the policy's own never_share promise; PIPL Art. 23";
    /// Cross-border transfers need a mechanism.
    pub const TRANSFER: &str = "PIPL Art. 38-39; GDPR Art. 44-46";
    /// Network logs kept at least six months.
    pub const NETWORK_LOGS: &str = "Cybersecurity Law Art. 21(3)";
    /// The app rules' limit on answering requests and completing cancellations.
    pub const APP_RULES_15_WORKING_DAYS: &str = "PIPL Art. 50; App Illegal Collection Determination Method (2019) §6: at most 15 working days";
    /// GDPR's one month.
    pub const GDPR_ONE_MONTH: &str = "GDPR Art. 12(3): one month";
    /// CCPA's 45 days.
    pub const CCPA_45_DAYS: &str = "CCPA Cal. Civ. Code §1798.130(a)(2): 45 days";
    /// PIPL's guardian age.
    pub const PIPL_MINORS: &str = "PIPL Art. 28, Art. 31: guardian consent below 14";
    /// COPPA's parental consent age.
    pub const COPPA_MINORS: &str =
        "COPPA 15 U.S.C. §6501(1), 16 CFR §312.5: parental consent below 13";
    /// GDPR's floor for the age of digital consent.
    pub const GDPR_MINORS: &str = "GDPR Art. 8(1): parental consent below 16, no lower than 13";
    /// CCPA's parental opt-in age.
    pub const CCPA_MINORS: &str = "CCPA Cal. Civ. Code §1798.120(c): parental opt-in below 13";
    /// Rights PIPL requires.
    pub const PIPL_RIGHTS: &str = "PIPL Art. 15, Art. 44-47";
    /// Rights GDPR requires.
    pub const GDPR_RIGHTS: &str = "GDPR Art. 15-21";
    /// Rights CCPA requires.
    pub const CCPA_RIGHTS: &str = "CCPA Cal. Civ. Code §1798.100-1798.125";
    /// Explanation of automated decisions.
    pub const AUTOMATED_DECISIONS: &str = "PIPL Art. 24; GDPR Art. 22";
    /// PIPL's closed list of legal bases has no legitimate interest.
    pub const PIPL_BASES: &str = "PIPL Art. 13 (no legitimate-interest basis)";
    /// Who the controller is and how to reach them.
    pub const CONTACT: &str = "PIPL Art. 17(1); GDPR Art. 13(1)(a)";
    /// Purpose limitation: data is collected only for a stated purpose.
    pub const PURPOSE_LIMITATION: &str = "PIPL Art. 6; GDPR Art. 5(1)(b)";
    /// A statutory retention names its law.
    pub const STATUTORY_SOURCE: &str = "PIPL Art. 19; GDPR Art. 17(3)(b)";
}

struct Checker<'a> {
    source: &'a Source,
    policy: &'a Policy,
    findings: Vec<Finding>,
}

/// Checks a parsed policy and returns every finding, in file order.
pub fn check(source: &Source, policy: &Policy) -> Vec<Finding> {
    let mut checker = Checker {
        source,
        policy,
        findings: Vec::new(),
    };
    checker.header();
    checker.categories();
    checker.purposes();
    checker.retention();
    checker.processors();
    checker.transfers();
    checker.cookies();
    checker.rights();
    checker.minors();
    checker
        .findings
        .sort_by_key(|f| (f.location.line, f.location.column, f.code));
    checker.findings
}

impl Checker<'_> {
    fn report(
        &mut self,
        code: &'static str,
        severity: Severity,
        span: &Range<usize>,
        key: String,
        message: String,
        source: Option<&'static str>,
    ) {
        self.findings.push(Finding {
            code,
            severity,
            message,
            location: self.source.locate_span(span),
            key,
            source,
        });
    }

    fn error(&mut self, code: &'static str, span: &Range<usize>, key: String, message: String) {
        self.report(code, Severity::Error, span, key, message, None);
    }

    fn legal(
        &mut self,
        code: &'static str,
        span: &Range<usize>,
        key: String,
        message: String,
        source: &'static str,
    ) {
        self.report(code, Severity::Error, span, key, message, Some(source));
    }

    fn is_declared_category(&self, key: &str) -> bool {
        self.policy.category(key).is_some()
    }

    /// Reports each category reference that is not declared.
    fn require_categories(&mut self, keys: &[Key], path: &str) {
        for key in keys {
            if !self.is_declared_category(key.get_ref()) {
                self.error(
                    "reference.undeclared_category",
                    &key.span(),
                    path.to_owned(),
                    format!(
                        "category `{}` is not declared; add a [[category]] with this key",
                        key.get_ref()
                    ),
                );
            }
        }
    }

    fn require_purpose(&mut self, key: &Key, path: &str) {
        if self.policy.purpose(key.get_ref()).is_none() {
            self.error(
                "reference.undeclared_purpose",
                &key.span(),
                path.to_owned(),
                format!("purpose `{}` is not declared", key.get_ref()),
            );
        }
    }

    fn duplicates<'k>(
        &mut self,
        code: &'static str,
        what: &str,
        keys: impl Iterator<Item = &'k Key>,
    ) {
        let mut seen: HashSet<&str> = HashSet::new();
        for key in keys {
            if !seen.insert(key.get_ref().as_str()) {
                self.error(
                    code,
                    &key.span(),
                    format!("{what}.{}", key.get_ref()),
                    format!("{what} `{}` is declared more than once", key.get_ref()),
                );
            }
        }
    }

    fn header(&mut self) {
        let policy = self.policy;
        if !is_iso_date(policy.effective.get_ref()) {
            self.error(
                "policy.effective_date",
                &policy.effective.span(),
                "effective".into(),
                format!(
                    "effective date `{}` is not a date in the form YYYY-MM-DD",
                    policy.effective.get_ref()
                ),
            );
        }
        if policy.version.get_ref().trim().is_empty() {
            self.error(
                "policy.version",
                &policy.version.span(),
                "version".into(),
                "the policy version is empty".into(),
            );
        }
        let contact = &policy.controller.contact;
        if [
            &contact.email,
            &contact.phone,
            &contact.address,
            &contact.web,
        ]
        .iter()
        .all(|c| c.as_deref().is_none_or(|v| v.trim().is_empty()))
        {
            self.legal(
                "controller.no_contact",
                &policy.controller.name.span(),
                "controller.contact".into(),
                "the controller gives no way to contact it (email, phone, address or web)".into(),
                sources::CONTACT,
            );
        }
        let mut laws = HashSet::new();
        for law in &policy.laws {
            if !laws.insert(*law.get_ref()) {
                self.error(
                    "duplicate.law",
                    &law.span(),
                    "laws".into(),
                    format!("law {} is listed more than once", law.get_ref().name()),
                );
            }
        }
    }

    fn categories(&mut self) {
        let policy = self.policy;
        self.duplicates(
            "duplicate.category",
            "category",
            policy.categories.iter().map(|c| &c.key),
        );
        for category in &policy.categories {
            let key = category.key.get_ref();
            let path = format!("category.{key}");
            let known = taxonomy::is_data_category(key);
            if !is_dotted_key(key) {
                self.error(
                    "category.malformed_key",
                    &category.key.span(),
                    path,
                    format!("category key `{key}` must be lower-case dotted words, like user.contact.email"),
                );
                continue;
            }
            match (known, category.extension) {
                (true, true) => self.error(
                    "category.extension_is_known",
                    &category.key.span(),
                    path.clone(),
                    format!("`{key}` is already a fideslang category; remove `extension = true`"),
                ),
                (false, false) => {
                    let hint = taxonomy::nearest_known_parent(key)
                        .map_or_else(String::new, |p| format!(" (it would extend `{p}`)"));
                    self.error(
                        "category.unknown_key",
                        &category.key.span(),
                        path.clone(),
                        format!(
                            "`{key}` is not a fideslang category; check the spelling, or declare it with `extension = true`{hint}"
                        ),
                    );
                }
                (false, true) if taxonomy::nearest_known_parent(key).is_none() => self.error(
                    "category.extension_without_parent",
                    &category.key.span(),
                    path.clone(),
                    format!("extension `{key}` does not extend any fideslang category"),
                ),
                _ => {}
            }
            let used = policy
                .purposes
                .iter()
                .any(|p| p.categories.iter().any(|c| c.get_ref() == key));
            if !used {
                self.legal(
                    "category.unused",
                    &category.key.span(),
                    path,
                    format!("category `{key}` is declared but no purpose processes it"),
                    sources::PURPOSE_LIMITATION,
                );
            }
        }
    }

    fn purposes(&mut self) {
        let policy = self.policy;
        self.duplicates(
            "duplicate.purpose",
            "purpose",
            policy.purposes.iter().map(|p| &p.key),
        );
        let explanation_offered = policy
            .rights
            .offered
            .iter()
            .any(|r| *r.get_ref() == Right::Explanation);
        for purpose in &policy.purposes {
            let key = purpose.key.get_ref();
            let path = format!("purpose.{key}");
            if !is_snake_key(key) {
                self.error(
                    "purpose.malformed_key",
                    &purpose.key.span(),
                    path.clone(),
                    format!(
                        "purpose key `{key}` must be lower-case snake_case, like ai_transcription"
                    ),
                );
            }
            if let Some(data_use) = &purpose.data_use
                && !taxonomy::is_data_use(data_use.get_ref())
            {
                self.error(
                    "purpose.unknown_use",
                    &data_use.span(),
                    format!("{path}.use"),
                    format!("`{}` is not a fideslang data use", data_use.get_ref()),
                );
            }
            if purpose.categories.is_empty() {
                self.error(
                    "purpose.no_categories",
                    &purpose.key.span(),
                    format!("{path}.categories"),
                    format!("purpose `{key}` names no categories"),
                );
            }
            self.require_categories(&purpose.categories, &format!("{path}.categories"));
            self.duplicates(
                "duplicate.purpose_category",
                &format!("{path}.categories"),
                purpose.categories.iter(),
            );
            let consent = *purpose.basis.get_ref() == LegalBasis::Consent;
            if consent && !purpose.separate_consent {
                for category in &purpose.categories {
                    if policy
                        .category(category.get_ref())
                        .is_some_and(|c| c.sensitive)
                    {
                        self.legal(
                            "consent.sensitive_not_separate",
                            &category.span(),
                            format!("{path}.categories"),
                            format!(
                                "purpose `{key}` processes sensitive category `{}` under consent, but does not ask separate consent (set separate_consent = true)",
                                category.get_ref()
                            ),
                            sources::SENSITIVE_CONSENT,
                        );
                    }
                }
            }
            if consent && !purpose.optional {
                self.legal(
                    "consent.not_optional",
                    &purpose.basis.span(),
                    format!("{path}.optional"),
                    format!(
                        "purpose `{key}` rests on consent but is not optional: refusing consent must not block the service (set optional = true, or use the contract basis if it is necessary)"
                    ),
                    sources::CONSENT_FREELY_GIVEN,
                );
            }
            if *purpose.basis.get_ref() == LegalBasis::LegitimateInterest
                && policy.applies(Law::Pipl)
            {
                self.legal(
                    "purpose.basis_not_in_law",
                    &purpose.basis.span(),
                    format!("{path}.basis"),
                    format!(
                        "purpose `{key}` rests on legitimate interest, which PIPL does not recognise; use consent, contract or a legal obligation"
                    ),
                    sources::PIPL_BASES,
                );
            }
            if !consent && (purpose.separate_consent || purpose.consent_valid_for.is_some()) {
                self.error(
                    "purpose.consent_terms_without_consent",
                    &purpose.basis.span(),
                    path.clone(),
                    format!("purpose `{key}` sets consent terms but its basis is not consent"),
                );
            }
            if purpose.automated_decision && !explanation_offered {
                self.legal(
                    "rights.explanation_missing",
                    &purpose.key.span(),
                    path,
                    format!(
                        "purpose `{key}` makes automated decisions but the rights do not offer an explanation"
                    ),
                    sources::AUTOMATED_DECISIONS,
                );
            }
        }
    }

    fn retention(&mut self) {
        let policy = self.policy;
        let ids: Vec<&Key> = policy
            .retention
            .iter()
            .filter_map(|r| r.id.as_ref())
            .collect();
        self.duplicates("duplicate.retention_id", "retention", ids.into_iter());
        let mut covered: HashMap<&str, usize> = HashMap::new();
        for (index, rule) in policy.retention.iter().enumerate() {
            let path = format!("retention.{}", rule.id_or(index));
            self.require_categories(&rule.categories, &format!("{path}.categories"));
            for category in &rule.categories {
                if let Some(previous) = covered.insert(category.get_ref(), index) {
                    self.error(
                        "duplicate.retention_category",
                        &category.span(),
                        format!("{path}.categories"),
                        format!(
                            "category `{}` already has a retention rule ({}); a record's expiry must be unambiguous",
                            category.get_ref(),
                            policy
                                .retention
                                .get(previous)
                                .map_or_else(String::new, |r| r.id_or(previous))
                        ),
                    );
                }
            }
            if rule.statutory
                && rule
                    .legal_source
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
            {
                self.legal(
                    "retention.statutory_without_source",
                    &rule.keep.span(),
                    format!("{path}.legal_source"),
                    "a statutory retention must name the law that requires it (legal_source)"
                        .into(),
                    sources::STATUTORY_SOURCE,
                );
            }
            if let Some(extension) = &rule.extension {
                self.require_purpose(&extension.purpose, &format!("{path}.extension.purpose"));
                if !rule
                    .keep
                    .get_ref()
                    .certainly_shorter_than(extension.keep.get_ref())
                {
                    self.error(
                        "retention.extension_not_longer",
                        &extension.keep.span(),
                        format!("{path}.extension.keep"),
                        format!(
                            "the extension keeps {} but the rule already keeps {}; an extension must be longer",
                            extension.keep.get_ref(),
                            rule.keep.get_ref()
                        ),
                    );
                }
            }
            if policy.applies(Law::Pipl) {
                // Regulators and the national standards read "six months" as 180 days, which is
                // how published policies state it ("logs are kept 180 days").
                let six_months = PolicyDuration::days(180);
                for category in &rule.categories {
                    let is_log = policy
                        .category(category.get_ref())
                        .is_some_and(|c| c.network_log);
                    if is_log && rule.keep.get_ref().certainly_shorter_than(&six_months) {
                        self.legal(
                            "retention.network_log_too_short",
                            &rule.keep.span(),
                            format!("{path}.keep"),
                            format!(
                                "network log `{}` is kept {} but must be kept at least six months (180 days) where PIPL applies",
                                category.get_ref(),
                                rule.keep.get_ref()
                            ),
                            sources::NETWORK_LOGS,
                        );
                    }
                }
            }
        }
        for category in &policy.categories {
            let key = category.key.get_ref().as_str();
            if !covered.contains_key(key) {
                self.legal(
                    "retention.missing",
                    &category.key.span(),
                    format!("category.{key}"),
                    format!("category `{key}` has no retention rule"),
                    sources::RETENTION,
                );
            }
        }
    }

    fn processors(&mut self) {
        let policy = self.policy;
        self.duplicates(
            "duplicate.processor",
            "processor",
            policy.processors.iter().map(|p| &p.name),
        );
        let transfer_regulated = policy.applies(Law::Pipl) || policy.applies(Law::Gdpr);
        for processor in &policy.processors {
            let name = processor.name.get_ref();
            let path = format!("processor.{name}");
            self.require_categories(&processor.categories, &format!("{path}.categories"));
            if processor.purposes.is_empty() {
                self.legal(
                    "processor.no_purpose",
                    &processor.name.span(),
                    format!("{path}.purposes"),
                    format!("processor `{name}` serves no declared purpose"),
                    sources::SHARING_PURPOSE,
                );
            }
            for purpose in &processor.purposes {
                self.require_purpose(purpose, &format!("{path}.purposes"));
            }
            for category in &processor.categories {
                let key = category.get_ref();
                let Some(declared) = policy.category(key) else {
                    continue;
                };
                if declared.never_share {
                    self.legal(
                        "processor.never_shared_category",
                        &category.span(),
                        format!("{path}.categories"),
                        format!(
                            "processor `{name}` receives `{key}`, which the policy promises is never shared"
                        ),
                        sources::NEVER_SHARED,
                    );
                }
                let used_by_its_purposes = processor.purposes.iter().any(|p| {
                    policy
                        .purpose(p.get_ref())
                        .is_some_and(|p| p.categories.iter().any(|c| c.get_ref() == key))
                });
                if !used_by_its_purposes {
                    self.legal(
                        "processor.category_outside_purposes",
                        &category.span(),
                        format!("{path}.categories"),
                        format!(
                            "processor `{name}` receives `{key}`, which none of its purposes ({}) uses",
                            processor
                                .purposes
                                .iter()
                                .map(|p| p.get_ref().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        sources::SHARING_PURPOSE,
                    );
                }
            }
            let abroad = processor.location.get_ref() != policy.data_location.get_ref();
            if abroad && transfer_regulated {
                let uncovered: Vec<&str> = processor
                    .categories
                    .iter()
                    .map(|c| c.get_ref().as_str())
                    .filter(|category| {
                        !self.transfer_covers(name, processor.location.get_ref(), category)
                    })
                    .collect();
                if !uncovered.is_empty() {
                    self.legal(
                        "transfer.missing_mechanism",
                        &processor.location.span(),
                        format!("{path}.location"),
                        format!(
                            "processor `{name}` is in {} but data is stored in {}, and no [[transfer]] with a mechanism covers {}",
                            processor.location.get_ref(),
                            policy.data_location.get_ref(),
                            uncovered.join(", ")
                        ),
                        sources::TRANSFER,
                    );
                }
            }
        }
    }

    fn transfer_covers(&self, processor: &str, location: &str, category: &str) -> bool {
        self.policy.transfers.iter().any(|t| {
            t.destination.get_ref() == location
                && (t.recipients.is_empty()
                    || t.recipients.iter().any(|r| r.get_ref() == processor))
                && t.categories.iter().any(|c| c.get_ref() == category)
        })
    }

    fn transfers(&mut self) {
        let policy = self.policy;
        for (index, transfer) in policy.transfers.iter().enumerate() {
            let path = format!("transfer[{index}]");
            self.require_categories(&transfer.categories, &format!("{path}.categories"));
            for recipient in &transfer.recipients {
                if policy.processor(recipient.get_ref()).is_none() {
                    self.error(
                        "reference.undeclared_processor",
                        &recipient.span(),
                        format!("{path}.recipients"),
                        format!(
                            "recipient `{}` is not a declared processor",
                            recipient.get_ref()
                        ),
                    );
                }
            }
            if transfer.destination.get_ref() == policy.data_location.get_ref() {
                self.error(
                    "transfer.not_abroad",
                    &transfer.destination.span(),
                    format!("{path}.destination"),
                    format!(
                        "transfer destination {} is the storage location itself",
                        transfer.destination.get_ref()
                    ),
                );
            }
            for category in &transfer.categories {
                if policy
                    .category(category.get_ref())
                    .is_some_and(|c| c.never_share)
                    && !transfer.recipients.is_empty()
                {
                    self.legal(
                        "processor.never_shared_category",
                        &category.span(),
                        format!("{path}.categories"),
                        format!(
                            "transfer to {} hands `{}` to recipients, but the policy promises it is never shared",
                            transfer.destination.get_ref(),
                            category.get_ref()
                        ),
                        sources::NEVER_SHARED,
                    );
                }
            }
        }
    }

    fn cookies(&mut self) {
        let policy = self.policy;
        self.duplicates(
            "duplicate.cookie",
            "cookie",
            policy.cookies.iter().map(|c| &c.key),
        );
        for cookie in &policy.cookies {
            if let Some(purpose) = &cookie.purpose {
                self.require_purpose(purpose, &format!("cookie.{}.purpose", cookie.key.get_ref()));
            }
        }
    }

    fn deadline_limits(&self) -> Vec<(Deadline, &'static str)> {
        let mut limits = Vec::new();
        if self.policy.applies(Law::Pipl) {
            limits.push((
                Deadline::WorkingDays {
                    working_days: 15,
                    calendar: "CN".into(),
                },
                sources::APP_RULES_15_WORKING_DAYS,
            ));
        }
        if self.policy.applies(Law::Gdpr) {
            limits.push((Deadline::Months { months: 1 }, sources::GDPR_ONE_MONTH));
        }
        if self.policy.applies(Law::Ccpa) {
            limits.push((Deadline::Days { days: 45 }, sources::CCPA_45_DAYS));
        }
        limits
    }

    fn deadline_within_law(&mut self, deadline: &Spanned<Deadline>, path: &str, what: &str) {
        for (limit, source) in self.deadline_limits() {
            if deadline.get_ref().longer_than(&limit) {
                self.legal(
                    "deadline.too_long",
                    &deadline.span(),
                    path.to_owned(),
                    format!(
                        "{what} within {} is longer than the law allows ({})",
                        deadline.get_ref(),
                        limit
                    ),
                    source,
                );
            }
        }
    }

    fn rights(&mut self) {
        let policy = self.policy;
        let rights = &policy.rights;
        self.deadline_within_law(
            &rights.respond_within,
            "rights.respond_within",
            "answering requests",
        );
        if let Some(deadline) = &rights.complaints_within {
            self.deadline_within_law(deadline, "rights.complaints_within", "answering complaints");
        }
        if let Some(deadline) = &rights.questions_within {
            self.deadline_within_law(deadline, "rights.questions_within", "answering questions");
        }
        if let Some(cancellation) = &policy.account_cancellation
            && policy.applies(Law::Pipl)
        {
            let limit = Deadline::WorkingDays {
                working_days: 15,
                calendar: "CN".into(),
            };
            if cancellation.complete_within.get_ref().longer_than(&limit) {
                self.legal(
                        "deadline.too_long",
                        &cancellation.complete_within.span(),
                        "account_cancellation.complete_within".into(),
                        format!(
                            "completing an account cancellation within {} is longer than the law allows ({limit})",
                            cancellation.complete_within.get_ref()
                        ),
                        sources::APP_RULES_15_WORKING_DAYS,
                    );
            }
        }
        let offered: HashSet<Right> = rights.offered.iter().map(|r| *r.get_ref()).collect();
        let mut seen = HashSet::new();
        for right in &rights.offered {
            if !seen.insert(*right.get_ref()) {
                self.error(
                    "duplicate.right",
                    &right.span(),
                    "rights.offered".into(),
                    format!("right `{:?}` is listed more than once", right.get_ref()),
                );
            }
        }
        let required: [(Law, &[Right], &'static str); 3] = [
            (
                Law::Pipl,
                &[
                    Right::Access,
                    Right::Copy,
                    Right::Rectification,
                    Right::Erasure,
                    Right::WithdrawConsent,
                ],
                sources::PIPL_RIGHTS,
            ),
            (
                Law::Gdpr,
                &[
                    Right::Access,
                    Right::Rectification,
                    Right::Erasure,
                    Right::Restriction,
                    Right::Objection,
                    Right::Portability,
                    Right::WithdrawConsent,
                ],
                sources::GDPR_RIGHTS,
            ),
            (
                Law::Ccpa,
                &[
                    Right::Access,
                    Right::Erasure,
                    Right::Rectification,
                    Right::OptOutOfSale,
                ],
                sources::CCPA_RIGHTS,
            ),
        ];
        let span = rights.respond_within.span();
        for (law, needed, source) in required {
            if !policy.applies(law) {
                continue;
            }
            let missing: Vec<String> = needed
                .iter()
                .filter(|r| !offered.contains(r))
                .map(|r| right_key(*r))
                .collect();
            if !missing.is_empty() {
                self.legal(
                    "rights.missing",
                    &span,
                    "rights.offered".into(),
                    format!("{} requires offering: {}", law.name(), missing.join(", ")),
                    source,
                );
            }
        }
    }

    fn minors(&mut self) {
        let policy = self.policy;
        let floors: Vec<(Law, u8, &'static str)> = [
            (Law::Pipl, 14, sources::PIPL_MINORS),
            (Law::Coppa, 13, sources::COPPA_MINORS),
            (Law::Gdpr, 13, sources::GDPR_MINORS),
            (Law::Ccpa, 13, sources::CCPA_MINORS),
        ]
        .into_iter()
        .filter(|(law, ..)| policy.applies(*law))
        .collect();
        let Some(minors) = &policy.minors else {
            if let Some((law, age, source)) = floors.first() {
                self.legal(
                    "minors.missing",
                    &policy.version.span(),
                    "minors".into(),
                    format!(
                        "{} applies but the policy has no [minors] section (guardian consent below {age})",
                        law.name()
                    ),
                    source,
                );
            }
            return;
        };
        // A child is protected if the service either asks a guardian or refuses them outright.
        let guardian = minors.guardian_consent_below.as_ref();
        let refuse = minors.refuse_below.as_ref();
        let protected_below = guardian
            .map(|g| *g.get_ref())
            .max(refuse.map(|r| *r.get_ref()))
            .unwrap_or(0);
        let span = guardian
            .map(Spanned::span)
            .or_else(|| refuse.map(Spanned::span))
            .unwrap_or_else(|| policy.version.span());
        for (law, age, source) in floors {
            if protected_below < age {
                self.legal(
                    "minors.guardian_age_too_low",
                    &span,
                    "minors.guardian_consent_below".into(),
                    format!(
                        "children are protected only below {protected_below}, but {} requires guardian consent below {age}",
                        law.name()
                    ),
                    source,
                );
            }
        }
        if let (Some(guardian), Some(refuse)) = (guardian, refuse)
            && refuse.get_ref() > guardian.get_ref()
        {
            self.error(
                    "minors.inconsistent_ages",
                    &refuse.span(),
                    "minors.refuse_below".into(),
                    format!(
                        "refuse_below ({}) is above guardian_consent_below ({}); guardian consent would never apply",
                        refuse.get_ref(),
                        guardian.get_ref()
                    ),
                );
        }
    }
}

/// The snake_case key of a right, as written in the file.
pub fn right_key(right: Right) -> String {
    serde_json::to_value(right)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn is_iso_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return false;
    }
    let number = |range: Range<usize>| text.get(range).and_then(|s| s.parse::<u32>().ok());
    match (number(0..4), number(5..7), number(8..10)) {
        (Some(year), Some(month), Some(day)) => {
            let days_in_month = match month {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
                2 => 28,
                _ => return false,
            };
            (1..=days_in_month).contains(&day)
        }
        _ => false,
    }
}

fn is_dotted_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn is_snake_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_dates() {
        assert!(is_iso_date("2025-06-01"));
        assert!(is_iso_date("2024-02-29"));
        assert!(!is_iso_date("2025-02-29"));
        assert!(!is_iso_date("2025-13-01"));
        assert!(!is_iso_date("2025-6-1"));
    }

    #[test]
    fn right_keys_match_the_file_syntax() {
        assert_eq!(right_key(Right::WithdrawConsent), "withdraw_consent");
    }
}
