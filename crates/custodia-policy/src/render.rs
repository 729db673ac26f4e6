//! Renders the human-readable privacy policy (Markdown and a self-contained HTML page) from the
//! policy file, so the published text and the enforced behaviour cannot drift apart.
//!
//! The sections follow the order the four source policies use ([`SECTIONS`]). Every period and
//! deadline is written with the same `to_words()` the engine's messages use, so the number a
//! reader sees is the number the sweeper and the request clock enforce.
//!
//! Every string that comes from the file is escaped once, as it enters the Markdown: it reads as
//! written and can add no markup (no headings, links, table cells or raw HTML). The HTML page is
//! produced from that Markdown, and raw HTML events are turned back into text as a second line
//! of defence, so a policy file can never inject markup into the published page.

use pulldown_cmark::{Event, Options, Parser};

use crate::duration::{Deadline, PolicyDuration};
use crate::model::{
    Contact, Deidentify, Key, Law, LegalBasis, Policy, Processor, ProcessorKind, Purpose,
    RetentionRule, Right, TransferMechanism,
};

const COLLECTION: &str = "What personal information we collect and why";
const SENSITIVE: &str = "Sensitive personal information";
const COOKIES: &str = "Cookies and similar technologies";
const SHARING: &str = "How we share personal information";
const STORAGE: &str = "How we store personal information and how long we keep it";
const DEIDENTIFICATION: &str = "De-identification";
const SECURITY: &str = "How we protect personal information";
const RIGHTS: &str = "Your rights and how to exercise them";
const MINORS: &str = "Children's personal information";
const TRANSFERS: &str = "Cross-border transfers";
const CHANGES: &str = "Changes to this policy";
const CONTACT: &str = "Contact us";

/// The numbered sections of the rendered policy, in the order they appear (after the title and
/// introduction). Each is rendered as `## N. Title`, N counting from 1.
pub const SECTIONS: [&str; 12] = [
    COLLECTION,
    SENSITIVE,
    COOKIES,
    SHARING,
    STORAGE,
    DEIDENTIFICATION,
    SECURITY,
    RIGHTS,
    MINORS,
    TRANSFERS,
    CHANGES,
    CONTACT,
];

/// The policy as Markdown.
pub fn markdown(policy: &Policy) -> String {
    let mut doc = Doc::default();
    intro(&mut doc, policy);
    collection(&mut doc, policy);
    sensitive(&mut doc, policy);
    cookies(&mut doc, policy);
    sharing(&mut doc, policy);
    storage(&mut doc, policy);
    deidentification(&mut doc, policy);
    security(&mut doc, policy);
    rights(&mut doc, policy);
    minors(&mut doc, policy);
    transfers(&mut doc, policy);
    changes(&mut doc, policy);
    contact(&mut doc, policy);
    doc.finish()
}

/// The policy as one self-contained HTML page.
pub fn html(policy: &Policy) -> String {
    let source = markdown(policy);
    // File text is already escaped in the Markdown; turning raw HTML back into text means that
    // even a mistake in that escaping cannot let markup through to the page.
    let events = Parser::new_ext(&source, Options::ENABLE_TABLES).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut body = String::with_capacity(source.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut body, events);

    let mut page = String::with_capacity(body.len() + STYLE.len() + 512);
    page.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str("<title>");
    page.push_str(&escape_html(&title(policy)));
    page.push_str("</title>\n<style>\n");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n<main>\n");
    page.push_str(&body);
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// Readable typography without any external resource: system fonts (with CJK fallbacks, as the
/// operators publish in China), a measure of about 70 characters, tables that scroll sideways on
/// narrow screens instead of overflowing.
const STYLE: &str = r#"*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:#fff;color:#1f2328;font:16px/1.65 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","PingFang SC","Microsoft YaHei",sans-serif}
main{max-width:48rem;margin:0 auto;padding:2rem 1.25rem 4rem}
h1{font-size:2rem;line-height:1.25;margin:0 0 1rem}
h2{font-size:1.4rem;line-height:1.3;margin:2.5rem 0 .75rem;padding-bottom:.3rem;border-bottom:1px solid #d0d7de}
h3{font-size:1.1rem;line-height:1.35;margin:1.75rem 0 .5rem}
p,ul,ol{margin:0 0 1rem}
li{margin:.25rem 0}
a{color:#0969da;overflow-wrap:anywhere}
table{display:block;max-width:100%;overflow-x:auto;border-collapse:collapse;margin:0 0 1.25rem;font-size:.925rem}
th,td{border:1px solid #d0d7de;padding:.45rem .65rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
tbody tr:nth-child(2n){background:#fafbfc}
@media print{body{font-size:11pt}main{max-width:none;padding:0}a{color:inherit}table{display:table}h2,h3{break-after:avoid}tr{break-inside:avoid}}
"#;

fn title(policy: &Policy) -> String {
    format!("{} Privacy Policy", policy.controller.product.get_ref())
}

fn intro(doc: &mut Doc, policy: &Policy) {
    let controller = &policy.controller;
    let product = md(controller.product.get_ref());
    doc.heading(1, &md(&title(policy)));
    doc.para(&format!(
        "Version {}, effective {}.",
        md(policy.version.get_ref()),
        md(policy.effective.get_ref())
    ));
    doc.para(&format!(
        "This policy explains how {} (\"we\", \"us\") collects, uses, stores, shares and protects \
         your personal information when you use {product}, and how you can exercise your rights \
         over it.",
        md(controller.name.get_ref())
    ));
    let laws: Vec<String> = policy
        .laws
        .iter()
        .map(|law| law_name(*law.get_ref()).to_owned())
        .collect();
    if !laws.is_empty() {
        doc.para(&format!(
            "We process personal information under {}.",
            and_list(&laws)
        ));
    }
    doc.para(
        "The retention periods and response deadlines in this policy are the ones our systems \
         enforce: they are generated from the same policy file.",
    );
}

fn law_name(law: Law) -> &'static str {
    match law {
        Law::Pipl => {
            "the Personal Information Protection Law of the People's Republic of China (PIPL)"
        }
        Law::Gdpr => "the EU General Data Protection Regulation (GDPR)",
        Law::Ccpa => "the California Consumer Privacy Act (CCPA)",
        Law::Coppa => "the US Children's Online Privacy Protection Act (COPPA)",
    }
}

fn collection(doc: &mut Doc, policy: &Policy) {
    doc.section(COLLECTION);
    if policy.purposes.is_empty() {
        doc.para("We do not process personal information for any purpose.");
        return;
    }
    doc.para(
        "We collect and use only the personal information each purpose below needs. For each \
         purpose we state what we use, why we may use it, and whether you can refuse it.",
    );
    let product = md(policy.controller.product.get_ref());
    for purpose in &policy.purposes {
        doc.heading(3, &purpose_label(purpose));
        if let Some(description) = &purpose.description {
            doc.para(&md(description));
        }
        let mut items = vec![
            format!(
                "**Personal information used:** {}.",
                category_list(policy, &purpose.categories, true)
            ),
            format!("**Legal basis:** {}.", purpose.basis.get_ref().to_words()),
        ];
        items.push(if purpose.optional {
            format!(
                "**Optional:** yes. If you refuse, you can still use the basic functions of \
                 {product}."
            )
        } else {
            "**Optional:** no.".to_owned()
        });
        if let Some(permission) = &purpose.permission {
            items.push(format!(
                "**Device permission:** {}. We ask for it when you first use this function, and \
                 you can turn it off in your device settings at any time.",
                md(&permission.replace('_', " "))
            ));
        }
        if let Some(consent) = consent_sentence(purpose) {
            items.push(format!("**Consent:** {consent}"));
        }
        if purpose.automated_decision {
            items.push(
                "**Automated decisions:** this purpose makes automated decisions about you. You \
                 can ask us to explain such a decision and refuse one made solely by automated \
                 means."
                    .to_owned(),
            );
        }
        doc.bullets(items);
    }
}

/// What the person is told about consent for one purpose, if anything applies.
fn consent_sentence(purpose: &Purpose) -> Option<String> {
    let by_consent = *purpose.basis.get_ref() == LegalBasis::Consent;
    let mut parts = Vec::new();
    if purpose.separate_consent {
        parts.push(
            "we ask for your separate consent for this purpose, apart from your acceptance of \
             this policy."
                .to_owned(),
        );
    }
    if let Some(scope) = &purpose.consent_scope {
        parts.push(format!(
            "The consent request states: {}",
            end_sentence(&md(scope))
        ));
    }
    if let Some(valid) = &purpose.consent_valid_for {
        let valid = valid.get_ref();
        parts.push(if valid.is_zero() {
            "Your consent covers a single use; we ask again each time.".to_owned()
        } else {
            format!(
                "Your consent is valid for {}; after that we ask you again.",
                valid.to_words()
            )
        });
    }
    if by_consent || purpose.separate_consent {
        parts.push(
            "You can withdraw it at any time; withdrawing stops this processing but does not \
             affect what was done before."
                .to_owned(),
        );
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join(" "))
}

fn sensitive(doc: &mut Doc, policy: &Policy) {
    doc.section(SENSITIVE);
    let sensitive: Vec<_> = policy.categories.iter().filter(|c| c.sensitive).collect();
    if sensitive.is_empty() {
        doc.para("We do not process sensitive personal information.");
        return;
    }
    doc.para(
        "Sensitive personal information is information that, if leaked or misused, could easily \
         harm your dignity or your personal or property safety. We process the sensitive \
         personal information below only for the purposes listed, with strict protection, and \
         we ask for your separate consent where the law requires it.",
    );
    let items = sensitive.iter().map(|category| {
        let key = category.key.get_ref();
        let uses: Vec<String> = policy
            .purposes
            .iter()
            .filter(|p| p.categories.iter().any(|c| c.get_ref() == key))
            .map(|p| {
                let how = if p.separate_consent {
                    "with your separate consent"
                } else {
                    p.basis.get_ref().to_words()
                };
                format!("{} ({how})", purpose_label(p))
            })
            .collect();
        let mut item = format!("**{}**: ", md(category.display_name()));
        if uses.is_empty() {
            item.push_str("not used for any purpose.");
        } else {
            item.push_str(&format!("used for {}.", uses.join("; ")));
        }
        if let Some(description) = &category.description {
            item.push(' ');
            item.push_str(&end_sentence(&capitalize(&md(description))));
        }
        item
    });
    doc.bullets(items);
}

fn cookies(doc: &mut Doc, policy: &Policy) {
    doc.section(COOKIES);
    let product = md(policy.controller.product.get_ref());
    if policy.cookies.is_empty() {
        doc.para(&format!(
            "{product} does not use cookies or similar tracking technologies."
        ));
        return;
    }
    doc.para(&format!(
        "{product} uses cookies and similar technologies (such as local storage and device \
         identifiers) as listed below."
    ));
    let rows = policy.cookies.iter().map(|cookie| {
        vec![
            md(&capitalize(&cookie.key.get_ref().replace('_', " "))),
            cookie.description.as_deref().map_or_else(dash, md),
            cookie
                .purpose
                .as_ref()
                .map_or_else(dash, |p| purpose_name(policy, p)),
            cookie
                .lifetime
                .as_ref()
                .map_or_else(dash, |l| l.get_ref().to_words()),
            if cookie.optional {
                "Yes".to_owned()
            } else {
                "No, they are needed for the service to work".to_owned()
            },
        ]
    });
    doc.table(
        &[
            "Type",
            "What they do",
            "Purpose",
            "How long they last",
            "Can you refuse them?",
        ],
        rows,
    );
    if policy.cookies.iter().any(|c| c.optional) {
        doc.para(
            "You can refuse or delete optional cookies in your browser or device settings; \
             refusing them does not block the basic functions.",
        );
    }
}

fn sharing(doc: &mut Doc, policy: &Policy) {
    doc.section(SHARING);
    let identified =
        |kind: ProcessorKind| move |p: &&Processor| p.kind == kind && !p.deidentified_only;
    let sdks: Vec<&Processor> = policy
        .processors
        .iter()
        .filter(identified(ProcessorKind::Sdk))
        .collect();
    let services: Vec<&Processor> = policy
        .processors
        .iter()
        .filter(identified(ProcessorKind::Service))
        .collect();
    let deidentified: Vec<&Processor> = policy
        .processors
        .iter()
        .filter(|p| p.deidentified_only && p.kind != ProcessorKind::Authority)
        .collect();
    let authorities: Vec<&Processor> = policy
        .processors
        .iter()
        .filter(|p| p.kind == ProcessorKind::Authority)
        .collect();

    if sdks.is_empty() && services.is_empty() {
        doc.para("We do not share personal information with third parties.");
    } else {
        doc.para(
            "We share personal information with the third parties below only for the purposes \
             stated, and each receives only the personal information listed for it.",
        );
    }
    if !sdks.is_empty() {
        doc.heading(3, "Third-party SDKs");
        doc.para(&format!(
            "{} includes the following third-party software development kits (SDKs).",
            md(policy.controller.product.get_ref())
        ));
        processor_table(doc, policy, "SDK", &sdks);
    }
    if !services.is_empty() {
        doc.heading(3, "Service providers");
        processor_table(doc, policy, "Provider", &services);
    }

    let never: Vec<String> = policy
        .categories
        .iter()
        .filter(|c| c.never_share)
        .map(|c| md(c.display_name()))
        .collect();
    if !never.is_empty() {
        doc.heading(3, "Information we never share");
        doc.para(&format!(
            "We never share the following personal information with any third party: {}.",
            never.join("; ")
        ));
    }

    if !deidentified.is_empty() {
        doc.heading(3, "De-identified information");
        doc.para(
            "The following recipients receive only de-identified or aggregated information that \
             cannot identify you:",
        );
        doc.bullets(deidentified.iter().map(|p| recipient_item(policy, p)));
    }

    doc.heading(3, "Public authorities");
    doc.para(
        "We disclose personal information to courts, regulators or law-enforcement authorities \
         only when a law requires it. We check the legal basis and documents of every such \
         request, and we record each disclosure together with those documents.",
    );
    if !authorities.is_empty() {
        doc.bullets(authorities.iter().map(|p| recipient_item(policy, p)));
    }
}

fn processor_table(doc: &mut Doc, policy: &Policy, first: &str, processors: &[&Processor]) {
    let rows = processors.iter().map(|p| {
        let mut purpose = key_list(&p.purposes, |k| purpose_name(policy, k));
        // Files often restate the purpose as the description; saying it twice reads as a typo.
        let description = p
            .description
            .as_deref()
            .map(|d| end_sentence(&capitalize(&md(d))));
        if let Some(description) = description.filter(|d| *d != end_sentence(&purpose)) {
            purpose.push_str(". ");
            purpose.push_str(&description);
        }
        vec![
            md(p.name.get_ref()),
            p.entity.as_deref().map_or_else(dash, md),
            category_list(policy, &p.categories, false),
            purpose,
            md(p.location.get_ref()),
            p.policy_url.as_deref().map_or_else(dash, link),
        ]
    });
    doc.table(
        &[
            first,
            "Company",
            "Personal information received",
            "Purpose",
            "Location",
            "Privacy policy",
        ],
        rows,
    );
}

fn recipient_item(policy: &Policy, p: &Processor) -> String {
    let who = match &p.entity {
        Some(entity) => format!("{}, {}", md(entity), md(p.location.get_ref())),
        None => md(p.location.get_ref()),
    };
    let mut item = format!(
        "**{}** ({who}). Receives: {}.",
        md(p.name.get_ref()),
        category_list(policy, &p.categories, false)
    );
    if !p.purposes.is_empty() {
        item.push_str(" Purpose: ");
        item.push_str(&key_list(&p.purposes, |k| purpose_name(policy, k)));
        item.push('.');
    }
    if let Some(description) = &p.description {
        item.push(' ');
        item.push_str(&end_sentence(&md(description)));
    }
    if let Some(url) = &p.policy_url {
        item.push_str(" Privacy policy: ");
        item.push_str(&link(url));
    }
    item
}

fn storage(doc: &mut Doc, policy: &Policy) {
    doc.section(STORAGE);
    let location = md(policy.data_location.get_ref());
    doc.para(&format!(
        "We store personal information on servers in {location}."
    ));
    if policy.retention.is_empty() {
        doc.para("We do not keep personal information.");
        return;
    }
    doc.para(
        "We keep personal information only as long as its purpose needs it. When a period below \
         ends, we delete the information or anonymise it so that it no longer identifies you. \
         If you ask us to delete information earlier, we do so, except information a law \
         requires us to keep: that is only stored, and used for nothing else.",
    );
    let rows = policy.retention.iter().map(|rule| {
        vec![
            category_list(policy, &rule.categories, false),
            kept_until(rule),
            retention_notes(policy, rule),
        ]
    });
    doc.table(
        &["Personal information", "When we delete it", "Notes"],
        rows,
    );
}

/// "90 days after your account is closed", "immediately after processing completes".
fn kept_until(rule: &RetentionRule) -> String {
    period(rule.keep.get_ref(), rule)
}

fn period(keep: &PolicyDuration, rule: &RetentionRule) -> String {
    format!("{} {}", keep.to_words(), rule.after.to_words())
}

fn retention_notes(policy: &Policy, rule: &RetentionRule) -> String {
    let mut notes = Vec::new();
    if rule.statutory {
        let source = rule
            .legal_source
            .as_deref()
            .map_or_else(String::new, |s| format!(" ({})", md(s)));
        notes.push(format!(
            "Required by law{source}: we keep it even if you ask us to delete it, in storage only, \
             and use it for nothing else."
        ));
    }
    if let Some(extension) = &rule.extension {
        let key = extension.purpose.get_ref();
        let by_consent = policy
            .purpose(key)
            .is_some_and(|p| *p.basis.get_ref() == LegalBasis::Consent);
        let condition = if by_consent {
            format!(
                "If you agree to {}",
                purpose_name(policy, &extension.purpose)
            )
        } else {
            format!(
                "While it is needed for {}",
                purpose_name(policy, &extension.purpose)
            )
        };
        notes.push(format!(
            "{condition}, we may keep it up to {}.",
            period(extension.keep.get_ref(), rule)
        ));
    }
    if let Some(description) = &rule.description {
        notes.push(end_sentence(&md(description)));
    }
    if notes.is_empty() {
        dash()
    } else {
        notes.join(" ")
    }
}

fn deidentification(doc: &mut Doc, policy: &Policy) {
    doc.section(DEIDENTIFICATION);
    let items: Vec<String> = policy
        .categories
        .iter()
        .filter_map(|c| {
            let when = match c.deidentify? {
                Deidentify::OnCollection => "de-identified as soon as it is collected",
                Deidentify::BeforeAnalysis => "de-identified before it is analysed",
            };
            Some(format!("**{}**: {when}.", md(c.display_name())))
        })
        .collect();
    if items.is_empty() {
        doc.para(&format!(
            "We do not rely on de-identification: the personal information we hold is protected \
             as described in \"{SECURITY}\"."
        ));
        return;
    }
    doc.para(
        "De-identified information has been processed so that it cannot identify you without \
         additional information, which we keep separately and protect.",
    );
    doc.bullets(items);
}

fn security(doc: &mut Doc, policy: &Policy) {
    doc.section(SECURITY);
    let measures = policy
        .security
        .as_ref()
        .map(|s| s.measures.as_slice())
        .unwrap_or_default();
    if measures.is_empty() {
        doc.para(
            "We protect personal information with technical and organisational measures suited to \
             the risk.",
        );
    } else {
        doc.para(
            "We protect personal information with technical and organisational measures suited to \
             the risk, including:",
        );
        doc.bullets(measures.iter().map(|m| md(m)));
    }
    doc.heading(3, "Security incidents");
    doc.para(
        "If a security incident affects your personal information, we tell you, as the law \
         requires, what happened, which information is involved, what we have done and what you \
         can do to reduce the risk, and we report it to the authorities where the law requires.",
    );
    if let Some(notice) = policy
        .security
        .as_ref()
        .and_then(|s| s.incident_notice.as_deref())
    {
        doc.para(&format!(
            "**How we notify you:** {}",
            end_sentence(&md(notice))
        ));
    }
}

fn rights(doc: &mut Doc, policy: &Policy) {
    doc.section(RIGHTS);
    let rights = &policy.rights;
    let offered: Vec<Right> = rights.offered.iter().map(|r| *r.get_ref()).collect();
    if offered.is_empty() {
        doc.para("You can ask us about the personal information we hold about you.");
    } else {
        doc.para("You have the right to:");
        doc.bullets(offered.iter().map(|right| {
            let mut item = right.to_words().to_owned();
            if let (Right::Portability, Some(format)) = (right, &rights.portability_format) {
                item.push_str(&format!(" (format: {})", md(format)));
            }
            item
        }));
    }
    if offered.contains(&Right::WithdrawConsent) {
        doc.para(
            "Withdrawing consent stops the processing that relied on it; it does not affect \
             processing carried out before you withdrew.",
        );
    }

    doc.heading(3, "How to make a request");
    if rights.channels.is_empty() {
        doc.para(&format!("Contact us using the details in \"{CONTACT}\"."));
    } else {
        doc.para("You can make a request:");
        doc.bullets(rights.channels.iter().map(|c| md(c)));
    }
    doc.para(&match &rights.verification {
        Some(verification) => format!(
            "**Verifying your identity.** {}",
            end_sentence(&capitalize(&md(verification)))
        ),
        None => "**Verifying your identity.** To protect your information, we may ask you to \
                 confirm your identity before we act on a request."
            .to_owned(),
    });

    doc.heading(3, "How quickly we answer");
    let mut answers = vec![format!(
        "We answer your request within {}.",
        deadline(rights.respond_within.get_ref())
    )];
    if let Some(within) = &rights.complaints_within {
        answers.push(format!(
            "We answer complaints within {}.",
            deadline(within.get_ref())
        ));
    }
    if let Some(within) = &rights.questions_within {
        answers.push(format!(
            "We answer questions about this policy or your information within {}.",
            deadline(within.get_ref())
        ));
    }
    doc.para(&answers.join(" "));

    account_cancellation(doc, policy, &offered);
}

fn account_cancellation(doc: &mut Doc, policy: &Policy, offered: &[Right]) {
    let Some(cancellation) = &policy.account_cancellation else {
        if offered.contains(&Right::AccountCancellation) {
            doc.heading(3, "Cancelling your account");
            doc.para(&format!(
                "You can ask us to cancel your account through the channels above; we complete \
                 it within {}. After cancellation we delete or anonymise your personal \
                 information, except what a law requires us to keep.",
                deadline(policy.rights.respond_within.get_ref())
            ));
        }
        return;
    };
    doc.heading(3, "Cancelling your account");
    if let Some(how) = &cancellation.how {
        doc.para(&format!("**How to cancel:** {}", end_sentence(&md(how))));
    } else {
        doc.para("You can cancel your account through the channels above.");
    }
    if !cancellation.conditions.is_empty() {
        doc.para("Before we cancel it, your account must meet these conditions:");
        doc.bullets(cancellation.conditions.iter().map(|c| md(c)));
    }
    doc.para(&format!(
        "We complete the cancellation within {}. After cancellation we delete or anonymise your \
         personal information, except what a law requires us to keep, as shown in \"{STORAGE}\".",
        deadline(cancellation.complete_within.get_ref())
    ));
}

fn minors(doc: &mut Doc, policy: &Policy) {
    doc.section(MINORS);
    let product = md(policy.controller.product.get_ref());
    let minors = policy.minors.as_ref();
    let guardian = minors.and_then(|m| m.guardian_consent_below.as_ref());
    let refuse = minors.and_then(|m| m.refuse_below.as_ref());
    let notes = minors.map(|m| m.notes.as_slice()).unwrap_or_default();
    if guardian.is_none() && refuse.is_none() && notes.is_empty() {
        doc.para(&format!(
            "This policy sets no separate age rules for children. If you are a parent or \
             guardian and have questions about your child's personal information, contact us \
             using the details in \"{CONTACT}\"."
        ));
        return;
    }
    if let Some(age) = refuse {
        doc.para(&format!(
            "{product} is not for children under {}: we do not provide the service to anyone \
             under {} years of age.",
            age.get_ref(),
            age.get_ref()
        ));
    }
    if let Some(age) = guardian {
        doc.para(&format!(
            "If you are under {}, please read this policy with your parent or guardian. We \
             process the personal information of a child under {} only with the verified \
             consent of a parent or guardian, and we protect it as sensitive personal \
             information.",
            age.get_ref(),
            age.get_ref()
        ));
    }
    if !notes.is_empty() {
        doc.bullets(notes.iter().map(|n| md(n)));
    }
    doc.para(&format!(
        "Parents and guardians can exercise the rights in \"{RIGHTS}\" on behalf of their child."
    ));
}

fn transfers(doc: &mut Doc, policy: &Policy) {
    doc.section(TRANSFERS);
    let location = md(policy.data_location.get_ref());
    if policy.transfers.is_empty() {
        doc.para(&format!(
            "We do not transfer personal information outside {location}."
        ));
        return;
    }
    doc.para(&format!(
        "We store personal information in {location} and transfer it outside {location} only as \
         listed below."
    ));
    doc.bullets(policy.transfers.iter().map(|transfer| {
        let to = if transfer.recipients.is_empty() {
            "our own systems there".to_owned()
        } else {
            key_list(&transfer.recipients, |name| recipient_name(policy, name))
        };
        let mut item = format!(
            "**To {}.** Personal information: {}. Recipients: {to}. Safeguard: {}.",
            md(transfer.destination.get_ref()),
            category_list(policy, &transfer.categories, false),
            transfer.mechanism.get_ref().to_words()
        );
        if let Some(description) = &transfer.description {
            item.push(' ');
            item.push_str(&end_sentence(&capitalize(&md(description))));
        }
        item
    }));
    if policy
        .transfers
        .iter()
        .any(|t| *t.mechanism.get_ref() == TransferMechanism::Consent)
    {
        doc.para(
            "Where a transfer relies on your separate consent, we ask for it before any transfer \
             and you can withdraw it at any time.",
        );
    }
    doc.para(&format!(
        "You can exercise your rights over transferred information against us, as described in \
         \"{RIGHTS}\"."
    ));
}

fn changes(doc: &mut Doc, policy: &Policy) {
    doc.section(CHANGES);
    let changes = policy.changes.as_ref();
    match changes.and_then(|c| c.notice.as_deref()) {
        Some(notice) => doc.para(&end_sentence(&capitalize(&md(notice)))),
        None => doc.para(
            "When we change this policy we publish the new version with its effective date. If a \
             change is material, we tell you in the app before it takes effect, and we ask for \
             your consent again for any processing that relies on consent and that the change \
             affects.",
        ),
    }
    if let Some(archive) = changes.and_then(|c| c.archive.as_deref()) {
        let archive = link(archive);
        if archive.starts_with('[') {
            doc.para(&format!("Earlier versions are available at {archive}."));
        } else {
            doc.para(&format!("**Earlier versions:** {}", end_sentence(&archive)));
        }
    }
    doc.para(&format!(
        "This is version {}, effective {}.",
        md(policy.version.get_ref()),
        md(policy.effective.get_ref())
    ));
}

fn contact(doc: &mut Doc, policy: &Policy) {
    doc.section(CONTACT);
    let controller = &policy.controller;
    doc.para(&format!(
        "If you have questions about this policy or about your personal information, or want to \
         exercise your rights, contact {}:",
        md(controller.name.get_ref())
    ));
    let Contact {
        email,
        phone,
        address,
        web,
        dpo_email,
    } = &controller.contact;
    let mut items = Vec::new();
    if let Some(email) = email {
        items.push(format!("Email: {}", mail_link(email)));
    }
    if let Some(phone) = phone {
        items.push(format!("Phone: {}", md(phone)));
    }
    if let Some(address) = address {
        items.push(format!("Post: {}", md(address)));
    }
    if let Some(web) = web {
        items.push(format!("Online: {}", link(web)));
    }
    if let Some(dpo) = dpo_email {
        items.push(format!(
            "Personal information protection officer: {}",
            mail_link(dpo)
        ));
    }
    if let Some(address) = &controller.address {
        items.push(format!("Registered address: {}", md(address)));
    }
    if let Some(representative) = &controller.eu_representative {
        items.push(format!("Representative in the EU: {}", md(representative)));
    }
    doc.bullets(items);
}

/// How a deadline reads in the text. The calendar name comes from the file, so it is escaped;
/// for any real calendar code that leaves `to_words()` unchanged.
fn deadline(deadline: &Deadline) -> String {
    md(&deadline.to_words())
}

fn purpose_name(policy: &Policy, key: &Key) -> String {
    policy
        .purpose(key.get_ref())
        .map_or_else(|| humanize(key.get_ref()), purpose_label)
}

/// A purpose's name, or its snake-case key made readable ("crash_reporting" reads "Crash
/// reporting"), escaped.
fn purpose_label(purpose: &Purpose) -> String {
    match &purpose.name {
        Some(name) => md(name),
        None => humanize(purpose.key.get_ref()),
    }
}

fn humanize(key: &str) -> String {
    md(&capitalize(&key.replace('_', " ")))
}

fn recipient_name(policy: &Policy, name: &Key) -> String {
    match policy
        .processor(name.get_ref())
        .and_then(|p| p.entity.as_deref())
    {
        Some(entity) => format!("{} ({})", md(name.get_ref()), md(entity)),
        None => md(name.get_ref()),
    }
}

/// Category human names, in file order; with `mark_sensitive`, sensitive ones are marked.
fn category_list(policy: &Policy, keys: &[Key], mark_sensitive: bool) -> String {
    key_list(keys, |key| match policy.category(key.get_ref()) {
        Some(category) if mark_sensitive && category.sensitive => {
            format!("{} (sensitive)", md(category.display_name()))
        }
        Some(category) => md(category.display_name()),
        None => md(key.get_ref()),
    })
}

fn key_list(keys: &[Key], name: impl Fn(&Key) -> String) -> String {
    if keys.is_empty() {
        return "none".to_owned();
    }
    // Names often contain commas ("device model, OS version"), so lists of them use semicolons.
    keys.iter().map(name).collect::<Vec<_>>().join("; ")
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn dash() -> String {
    "—".to_owned()
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Adds a full stop unless the text already ends a sentence.
fn end_sentence(text: &str) -> String {
    if text.is_empty() || text.ends_with(['.', '!', '?', '。', ')']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// Escapes text from the policy file for Markdown, so that it reads as written and adds no
/// markup: whitespace (newlines included) collapses to single spaces, which keeps every value on
/// its own line, list item or table cell; punctuation that could open emphasis, code, links,
/// raw HTML or a table cell is backslash-escaped; and a start that would read as a heading,
/// list item or quote is defused.
fn md(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(collapsed.len() + 8);
    let mut chars = collapsed.chars().peekable();
    // A value may start a line or a list item, where "#", "- ", "+ " or "---" would open a
    // heading, a nested list or a rule (a leading ">" is escaped with the inline punctuation).
    let mut ahead = collapsed.chars();
    let opens_block = matches!(
        (ahead.next(), ahead.next()),
        (Some('#'), _) | (Some('-'), None | Some(' ' | '-')) | (Some('+'), None | Some(' '))
    );
    if opens_block {
        out.push('\\');
    }
    let mut leading_digits = true;
    while let Some(c) = chars.next() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            // "1. text" or "1) text" at the start of a line would become an ordered list.
            '.' | ')'
                if leading_digits
                    && !out.is_empty()
                    && chars.peek().is_none_or(|next| *next == ' ') =>
            {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        leading_digits = leading_digits && c.is_ascii_digit();
    }
    out
}

/// A link for a web address from the file, or escaped text when it is not a plain http(s) URL,
/// so that no `javascript:` or other scheme ever becomes a link.
fn link(url: &str) -> String {
    let plain = (url.starts_with("https://") || url.starts_with("http://"))
        && url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '\\' | '"' | '`'));
    if plain {
        format!("[{}](<{url}>)", md(url))
    } else {
        md(url)
    }
}

/// A `mailto:` link for a plain e-mail address, or escaped text.
fn mail_link(address: &str) -> String {
    let plain = address.contains('@')
        && address
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+'));
    if plain {
        format!("[{}](mailto:{address})", md(address))
    } else {
        md(address)
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A Markdown document built block by block, each block followed by one blank line.
#[derive(Debug, Default)]
struct Doc {
    out: String,
    sections: usize,
}

impl Doc {
    fn heading(&mut self, level: usize, text: &str) {
        self.out.push_str(&"#".repeat(level));
        self.out.push(' ');
        self.out.push_str(text);
        self.out.push_str("\n\n");
    }

    fn section(&mut self, title: &str) {
        self.sections += 1;
        let numbered = format!("{}. {title}", self.sections);
        self.heading(2, &numbered);
    }

    fn para(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.out.push_str(text);
        self.out.push_str("\n\n");
    }

    fn bullets(&mut self, items: impl IntoIterator<Item = String>) {
        let mut any = false;
        for item in items {
            self.out.push_str("- ");
            self.out.push_str(&item);
            self.out.push('\n');
            any = true;
        }
        if any {
            self.out.push('\n');
        }
    }

    /// Cells must already be escaped with [`md`], which keeps `|` and newlines out of them.
    fn table(&mut self, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
        self.out.push('|');
        for cell in header {
            self.out.push(' ');
            self.out.push_str(cell);
            self.out.push_str(" |");
        }
        self.out.push_str("\n|");
        for _ in header {
            self.out.push_str("---|");
        }
        self.out.push('\n');
        for row in rows {
            self.out.push('|');
            for cell in row {
                self.out.push(' ');
                self.out.push_str(if cell.is_empty() { "—" } else { &cell });
                self.out.push_str(" |");
            }
            self.out.push('\n');
        }
        self.out.push('\n');
    }

    fn finish(mut self) -> String {
        let trimmed = self.out.trim_end().len();
        self.out.truncate(trimmed);
        self.out.push('\n');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_collapses_lines() {
        assert_eq!(md("a | b\nc"), "a \\| b c");
        assert_eq!(md("<script>"), "\\<script\\>");
        assert_eq!(md("# not a heading"), "\\# not a heading");
        assert_eq!(md("1. not a list"), "1\\. not a list");
        assert_eq!(md("> quote"), "\\> quote");
        assert_eq!(md("- item"), "\\- item");
        assert_eq!(md("-5 degrees"), "-5 degrees");
        assert_eq!(md("+86 10"), "+86 10");
        assert_eq!(md("Co., Ltd."), "Co., Ltd.");
        assert_eq!(md("version 1.2"), "version 1.2");
        assert_eq!(md("2025-06-01"), "2025-06-01");
        assert_eq!(md("[x](javascript:y)"), "\\[x\\](javascript:y)");
    }

    #[test]
    fn links_only_plain_web_addresses() {
        assert_eq!(link("javascript:alert(1)"), "javascript:alert(1)");
        assert!(link("https://example.com/p?a=1").starts_with("[https://example.com/p?a=1]("));
        assert_eq!(mail_link("a b@c"), "a b@c");
    }

    #[test]
    fn lists_read_as_english() {
        let items = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(and_list(&items), "a, b and c");
        assert_eq!(and_list(items.get(..1).unwrap_or_default()), "a");
    }
}
