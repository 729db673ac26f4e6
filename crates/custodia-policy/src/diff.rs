//! Compares two versions of a policy and says what changed, marking the changes that are
//! *material*: those that widen what is done with people's data or weaken what they are promised
//! (a new purpose, a new category for a purpose, a new processor or transfer, a longer retention,
//! a weaker right). A material change needs fresh consent for the purposes it touches, so each
//! change names the purposes it affects for the consent ledger to act on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::check::right_key;
use crate::model::{Policy, Processor, Purpose, RetentionRule, Right, Transfer};

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Present only in the new version.
    Added,
    /// Present only in the old version.
    Removed,
    /// Present in both, different.
    Changed,
}

/// One difference between two policy versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// The key path, for example `purpose.ai_transcription.categories`.
    pub path: String,
    /// What changed, in a sentence.
    pub description: String,
    /// Whether it needs fresh consent (widens processing or weakens a promise).
    pub material: bool,
    /// The purposes whose consents a material change affects.
    pub purposes: Vec<String>,
}

/// All the differences between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    /// The old version label.
    pub from_version: String,
    /// The new version label.
    pub to_version: String,
    /// The changes, in a stable order.
    pub changes: Vec<Change>,
}

impl PolicyDiff {
    /// Whether any change is material.
    pub fn is_material(&self) -> bool {
        self.changes.iter().any(|c| c.material)
    }

    /// The purposes whose consents stop counting until renewed.
    pub fn purposes_needing_fresh_consent(&self) -> BTreeSet<String> {
        self.changes
            .iter()
            .filter(|c| c.material)
            .flat_map(|c| c.purposes.iter().cloned())
            .collect()
    }
}

struct Differ<'a> {
    old: &'a Policy,
    new: &'a Policy,
    changes: Vec<Change>,
}

/// Compares `old` with `new`.
pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let mut differ = Differ {
        old,
        new,
        changes: Vec::new(),
    };
    differ.header();
    differ.categories();
    differ.purposes();
    differ.retention();
    differ.processors();
    differ.transfers();
    differ.rights();
    differ.minors();
    PolicyDiff {
        from_version: old.version.get_ref().clone(),
        to_version: new.version.get_ref().clone(),
        changes: differ.changes,
    }
}

fn keys<'a>(items: impl IntoIterator<Item = &'a toml::Spanned<String>>) -> BTreeSet<&'a str> {
    items.into_iter().map(|k| k.get_ref().as_str()).collect()
}

fn list(items: &BTreeSet<&str>) -> String {
    items.iter().copied().collect::<Vec<_>>().join(", ")
}

impl Differ<'_> {
    fn push(&mut self, kind: ChangeKind, path: String, description: String, purposes: Vec<String>) {
        let material = !purposes.is_empty();
        self.changes.push(Change {
            kind,
            path,
            description,
            material,
            purposes,
        });
    }

    fn note(&mut self, kind: ChangeKind, path: String, description: String) {
        self.push(kind, path, description, Vec::new());
    }

    /// A material change that affects every purpose of the new version: where data is kept, which
    /// laws protect it, which rights people have.
    fn all_purposes(&self) -> Vec<String> {
        self.new
            .purposes
            .iter()
            .map(|p| p.key.get_ref().clone())
            .collect()
    }

    /// Purposes in the new version that process any of `categories`.
    fn purposes_using(&self, categories: &BTreeSet<&str>) -> Vec<String> {
        self.new
            .purposes
            .iter()
            .filter(|p| {
                p.categories
                    .iter()
                    .any(|c| categories.contains(c.get_ref().as_str()))
            })
            .map(|p| p.key.get_ref().clone())
            .collect()
    }

    fn header(&mut self) {
        let (old, new) = (self.old, self.new);
        if old.effective.get_ref() != new.effective.get_ref() {
            self.note(
                ChangeKind::Changed,
                "effective".into(),
                format!(
                    "effective date {} → {}",
                    old.effective.get_ref(),
                    new.effective.get_ref()
                ),
            );
        }
        if old.data_location.get_ref() != new.data_location.get_ref() {
            let purposes = self.all_purposes();
            self.push(
                ChangeKind::Changed,
                "data_location".into(),
                format!(
                    "data stored in {} instead of {}",
                    new.data_location.get_ref(),
                    old.data_location.get_ref()
                ),
                purposes,
            );
        }
        let old_laws: BTreeSet<_> = old.laws.iter().map(|l| l.get_ref().name()).collect();
        let new_laws: BTreeSet<_> = new.laws.iter().map(|l| l.get_ref().name()).collect();
        let dropped: BTreeSet<_> = old_laws.difference(&new_laws).copied().collect();
        let added: BTreeSet<_> = new_laws.difference(&old_laws).copied().collect();
        if !dropped.is_empty() {
            let purposes = self.all_purposes();
            self.push(
                ChangeKind::Removed,
                "laws".into(),
                format!("no longer declares {}", list(&dropped)),
                purposes,
            );
        }
        if !added.is_empty() {
            self.note(
                ChangeKind::Added,
                "laws".into(),
                format!("now declares {}", list(&added)),
            );
        }
    }

    fn categories(&mut self) {
        let old_keys = keys(self.old.categories.iter().map(|c| &c.key));
        let new_keys = keys(self.new.categories.iter().map(|c| &c.key));
        for key in new_keys.difference(&old_keys) {
            self.note(
                ChangeKind::Added,
                format!("category.{key}"),
                format!("new category `{key}`"),
            );
        }
        for key in old_keys.difference(&new_keys) {
            self.note(
                ChangeKind::Removed,
                format!("category.{key}"),
                format!("category `{key}` no longer held"),
            );
        }
        for key in old_keys.intersection(&new_keys) {
            let (Some(old), Some(new)) = (self.old.category(key), self.new.category(key)) else {
                continue;
            };
            let single: BTreeSet<&str> = std::iter::once(*key).collect();
            if old.never_share && !new.never_share {
                let purposes = self.purposes_using(&single);
                self.push(
                    ChangeKind::Changed,
                    format!("category.{key}.never_share"),
                    format!("`{key}` is no longer promised never to be shared"),
                    purposes,
                );
            }
            if old.sensitive != new.sensitive {
                self.note(
                    ChangeKind::Changed,
                    format!("category.{key}.sensitive"),
                    format!(
                        "`{key}` is {} sensitive",
                        if new.sensitive { "now" } else { "no longer" }
                    ),
                );
            }
            if old.deidentify.is_some() && new.deidentify.is_none() {
                let purposes = self.purposes_using(&single);
                self.push(
                    ChangeKind::Changed,
                    format!("category.{key}.deidentify"),
                    format!("`{key}` is no longer de-identified"),
                    purposes,
                );
            }
        }
    }

    fn purposes(&mut self) {
        let old_keys = keys(self.old.purposes.iter().map(|p| &p.key));
        let new_keys = keys(self.new.purposes.iter().map(|p| &p.key));
        for key in new_keys.difference(&old_keys) {
            self.push(
                ChangeKind::Added,
                format!("purpose.{key}"),
                format!("new purpose `{key}`"),
                vec![(*key).to_owned()],
            );
        }
        for key in old_keys.difference(&new_keys) {
            self.note(
                ChangeKind::Removed,
                format!("purpose.{key}"),
                format!("purpose `{key}` dropped"),
            );
        }
        for key in old_keys.intersection(&new_keys) {
            if let (Some(old), Some(new)) = (self.old.purpose(key), self.new.purpose(key)) {
                self.purpose_changed(key, old, new);
            }
        }
    }

    fn purpose_changed(&mut self, key: &str, old: &Purpose, new: &Purpose) {
        let this = || vec![key.to_owned()];
        let path = format!("purpose.{key}");
        let old_categories = keys(&old.categories);
        let new_categories = keys(&new.categories);
        let added: BTreeSet<_> = new_categories
            .difference(&old_categories)
            .copied()
            .collect();
        let removed: BTreeSet<_> = old_categories
            .difference(&new_categories)
            .copied()
            .collect();
        if !added.is_empty() {
            self.push(
                ChangeKind::Added,
                format!("{path}.categories"),
                format!("purpose `{key}` now also processes {}", list(&added)),
                this(),
            );
        }
        if !removed.is_empty() {
            self.note(
                ChangeKind::Removed,
                format!("{path}.categories"),
                format!("purpose `{key}` no longer processes {}", list(&removed)),
            );
        }
        if old.basis.get_ref() != new.basis.get_ref() {
            self.push(
                ChangeKind::Changed,
                format!("{path}.basis"),
                format!(
                    "legal basis of `{key}` changed from {:?} to {:?}",
                    old.basis.get_ref(),
                    new.basis.get_ref()
                ),
                this(),
            );
        }
        if old.optional && !new.optional {
            self.push(
                ChangeKind::Changed,
                format!("{path}.optional"),
                format!("purpose `{key}` is no longer optional"),
                this(),
            );
        }
        if old.separate_consent && !new.separate_consent {
            self.push(
                ChangeKind::Changed,
                format!("{path}.separate_consent"),
                format!("purpose `{key}` no longer asks separate consent"),
                this(),
            );
        }
        let validity = |p: &Purpose| p.consent_valid_for.as_ref().map(|d| *d.get_ref());
        match (validity(old), validity(new)) {
            (Some(before), Some(after)) if after.nominal_seconds() > before.nominal_seconds() => {
                self.push(
                    ChangeKind::Changed,
                    format!("{path}.consent_valid_for"),
                    format!("consent for `{key}` now lasts {after} instead of {before}"),
                    this(),
                );
            }
            (Some(before), None) => self.push(
                ChangeKind::Removed,
                format!("{path}.consent_valid_for"),
                format!("consent for `{key}` no longer expires (was {before})"),
                this(),
            ),
            _ => {}
        }
        if old.permission != new.permission {
            self.push(
                ChangeKind::Changed,
                format!("{path}.permission"),
                format!(
                    "purpose `{key}` is triggered by the {} permission instead of {}",
                    new.permission.as_deref().unwrap_or("no"),
                    old.permission.as_deref().unwrap_or("no")
                ),
                if new.permission.is_some() {
                    this()
                } else {
                    Vec::new()
                },
            );
        }
        if !old.automated_decision && new.automated_decision {
            self.push(
                ChangeKind::Changed,
                format!("{path}.automated_decision"),
                format!("purpose `{key}` now makes automated decisions"),
                this(),
            );
        }
    }

    fn retention(&mut self) {
        let rule_by_category = |policy: &'_ Policy| -> BTreeMap<String, RetentionRule> {
            policy
                .retention
                .iter()
                .flat_map(|r| {
                    r.categories
                        .iter()
                        .map(move |c| (c.get_ref().clone(), r.clone()))
                })
                .collect()
        };
        let old_rules = rule_by_category(self.old);
        let new_rules = rule_by_category(self.new);
        for (category, new) in &new_rules {
            let Some(old) = old_rules.get(category) else {
                continue;
            };
            let path = format!("retention.{category}");
            let single: BTreeSet<&str> = std::iter::once(category.as_str()).collect();
            let purposes = self.purposes_using(&single);
            let (before, after) = (old.keep.get_ref(), new.keep.get_ref());
            if old.after != new.after {
                self.push(
                    ChangeKind::Changed,
                    path.clone(),
                    format!(
                        "`{category}` kept {after} {} instead of {before} {}",
                        new.after.to_words(),
                        old.after.to_words()
                    ),
                    purposes.clone(),
                );
            } else if after.nominal_seconds() > before.nominal_seconds() {
                self.push(
                    ChangeKind::Changed,
                    path.clone(),
                    format!("`{category}` kept longer: {after} instead of {before}"),
                    purposes.clone(),
                );
            } else if after != before {
                self.note(
                    ChangeKind::Changed,
                    path.clone(),
                    format!("`{category}` kept shorter: {after} instead of {before}"),
                );
            }
            if !old.statutory && new.statutory {
                self.push(
                    ChangeKind::Changed,
                    format!("{path}.statutory"),
                    format!("`{category}` is now kept through an erasure (statutory)"),
                    purposes.clone(),
                );
            }
            let extension = |r: &RetentionRule| {
                r.extension.as_ref().map(|e| {
                    (
                        e.purpose.get_ref().clone(),
                        e.keep.get_ref().nominal_seconds(),
                    )
                })
            };
            match (extension(old), extension(new)) {
                (None, Some((purpose, _))) => self.push(
                    ChangeKind::Added,
                    format!("{path}.extension"),
                    format!("`{category}` may now be kept longer for `{purpose}`"),
                    vec![purpose],
                ),
                (Some((_, before)), Some((purpose, after))) if after > before => self.push(
                    ChangeKind::Changed,
                    format!("{path}.extension"),
                    format!("`{category}` may be kept longer than before for `{purpose}`"),
                    vec![purpose],
                ),
                _ => {}
            }
        }
    }

    fn processors(&mut self) {
        let old_names = keys(self.old.processors.iter().map(|p| &p.name));
        let new_names = keys(self.new.processors.iter().map(|p| &p.name));
        for name in new_names.difference(&old_names) {
            if let Some(processor) = self.new.processor(name) {
                let purposes = processor_purposes(processor);
                self.push(
                    ChangeKind::Added,
                    format!("processor.{name}"),
                    format!(
                        "new processor `{name}` receives {}",
                        list(&keys(&processor.categories))
                    ),
                    purposes,
                );
            }
        }
        for name in old_names.difference(&new_names) {
            self.note(
                ChangeKind::Removed,
                format!("processor.{name}"),
                format!("processor `{name}` no longer receives data"),
            );
        }
        for name in old_names.intersection(&new_names) {
            let (Some(old), Some(new)) = (self.old.processor(name), self.new.processor(name))
            else {
                continue;
            };
            let path = format!("processor.{name}");
            let added: BTreeSet<_> = keys(&new.categories)
                .difference(&keys(&old.categories))
                .copied()
                .collect();
            if !added.is_empty() {
                self.push(
                    ChangeKind::Added,
                    format!("{path}.categories"),
                    format!("processor `{name}` now also receives {}", list(&added)),
                    processor_purposes(new),
                );
            }
            let added_purposes: BTreeSet<_> = keys(&new.purposes)
                .difference(&keys(&old.purposes))
                .copied()
                .collect();
            if !added_purposes.is_empty() {
                self.push(
                    ChangeKind::Added,
                    format!("{path}.purposes"),
                    format!(
                        "processor `{name}` now also serves {}",
                        list(&added_purposes)
                    ),
                    added_purposes.iter().map(|p| (*p).to_owned()).collect(),
                );
            }
            if old.location.get_ref() != new.location.get_ref() {
                self.push(
                    ChangeKind::Changed,
                    format!("{path}.location"),
                    format!(
                        "processor `{name}` moved from {} to {}",
                        old.location.get_ref(),
                        new.location.get_ref()
                    ),
                    processor_purposes(new),
                );
            }
            if old.deidentified_only && !new.deidentified_only {
                self.push(
                    ChangeKind::Changed,
                    format!("{path}.deidentified_only"),
                    format!("processor `{name}` now receives identifiable data"),
                    processor_purposes(new),
                );
            }
        }
    }

    fn transfers(&mut self) {
        let describe = |t: &Transfer| {
            (
                t.destination.get_ref().clone(),
                format!("{:?}", t.mechanism.get_ref()),
                t.categories
                    .iter()
                    .map(|c| c.get_ref().clone())
                    .collect::<BTreeSet<_>>(),
            )
        };
        let old: Vec<_> = self.old.transfers.iter().map(describe).collect();
        for transfer in &self.new.transfers {
            let (destination, mechanism, categories) = describe(transfer);
            let previously: BTreeSet<&String> = old
                .iter()
                .filter(|(d, m, _)| *d == destination && *m == mechanism)
                .flat_map(|(_, _, c)| c.iter())
                .collect();
            let added: BTreeSet<&str> = categories
                .iter()
                .filter(|c| !previously.contains(c))
                .map(String::as_str)
                .collect();
            if !added.is_empty() {
                let purposes = self.purposes_using(&added);
                self.push(
                    ChangeKind::Added,
                    format!("transfer.{destination}"),
                    format!(
                        "{} transferred to {destination} under {}",
                        list(&added),
                        transfer.mechanism.get_ref().to_words()
                    ),
                    if purposes.is_empty() {
                        self.all_purposes()
                    } else {
                        purposes
                    },
                );
            }
        }
    }

    fn rights(&mut self) {
        let offered = |p: &Policy| -> BTreeSet<Right> {
            p.rights.offered.iter().map(|r| *r.get_ref()).collect()
        };
        let (old, new) = (offered(self.old), offered(self.new));
        for right in old.difference(&new) {
            let purposes = self.all_purposes();
            self.push(
                ChangeKind::Removed,
                "rights.offered".into(),
                format!("right `{}` no longer offered", right_key(*right)),
                purposes,
            );
        }
        for right in new.difference(&old) {
            self.note(
                ChangeKind::Added,
                "rights.offered".into(),
                format!("right `{}` now offered", right_key(*right)),
            );
        }
        let deadlines = [
            (
                "rights.respond_within",
                Some(self.old.rights.respond_within.get_ref()),
                Some(self.new.rights.respond_within.get_ref()),
            ),
            (
                "rights.complaints_within",
                self.old
                    .rights
                    .complaints_within
                    .as_ref()
                    .map(|d| d.get_ref()),
                self.new
                    .rights
                    .complaints_within
                    .as_ref()
                    .map(|d| d.get_ref()),
            ),
            (
                "rights.questions_within",
                self.old
                    .rights
                    .questions_within
                    .as_ref()
                    .map(|d| d.get_ref()),
                self.new
                    .rights
                    .questions_within
                    .as_ref()
                    .map(|d| d.get_ref()),
            ),
            (
                "account_cancellation.complete_within",
                self.old
                    .account_cancellation
                    .as_ref()
                    .map(|a| a.complete_within.get_ref()),
                self.new
                    .account_cancellation
                    .as_ref()
                    .map(|a| a.complete_within.get_ref()),
            ),
        ];
        for (path, before, after) in deadlines {
            match (before, after) {
                (Some(before), Some(after)) if after.longer_than(before) => {
                    let purposes = self.all_purposes();
                    self.push(
                        ChangeKind::Changed,
                        path.into(),
                        format!("deadline longer: {after} instead of {before}"),
                        purposes,
                    );
                }
                (Some(before), Some(after)) if before != after => self.note(
                    ChangeKind::Changed,
                    path.into(),
                    format!("deadline shorter: {after} instead of {before}"),
                ),
                _ => {}
            }
        }
    }

    fn minors(&mut self) {
        let ages = |p: &Policy| {
            p.minors.as_ref().map_or((0, 0), |m| {
                (
                    m.guardian_consent_below
                        .as_ref()
                        .map_or(0, |a| *a.get_ref()),
                    m.refuse_below.as_ref().map_or(0, |a| *a.get_ref()),
                )
            })
        };
        let ((old_guardian, old_refuse), (new_guardian, new_refuse)) =
            (ages(self.old), ages(self.new));
        if new_guardian < old_guardian {
            let purposes = self.all_purposes();
            self.push(
                ChangeKind::Changed,
                "minors.guardian_consent_below".into(),
                format!("guardian consent now below {new_guardian} instead of {old_guardian}"),
                purposes,
            );
        } else if new_guardian > old_guardian {
            self.note(
                ChangeKind::Changed,
                "minors.guardian_consent_below".into(),
                format!("guardian consent now below {new_guardian} instead of {old_guardian}"),
            );
        }
        if new_refuse < old_refuse {
            let purposes = self.all_purposes();
            self.push(
                ChangeKind::Changed,
                "minors.refuse_below".into(),
                format!("children refused below {new_refuse} instead of {old_refuse}"),
                purposes,
            );
        } else if new_refuse > old_refuse {
            self.note(
                ChangeKind::Changed,
                "minors.refuse_below".into(),
                format!("children refused below {new_refuse} instead of {old_refuse}"),
            );
        }
    }
}

fn processor_purposes(processor: &Processor) -> Vec<String> {
    processor
        .purposes
        .iter()
        .map(|p| p.get_ref().clone())
        .collect()
}
