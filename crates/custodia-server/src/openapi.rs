//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! request and response types, so it cannot drift from the code. A modifier adds what every
//! operation shares: the bearer scheme on `/v1` routes and the error answers that the extractors
//! and the vault can give any of them, all with the [`ErrorBody`] schema.

use std::sync::OnceLock;

use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder, path::Operation,
};

use crate::error::ErrorBody;
use crate::routes::{
    consents, decisions, disclosures, holds, media, notifications, operation_logs, policy, records,
    requests, subjects, sweeps, system,
};

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Custodia",
        description = "A privacy engine: personal data kept under the operator's policy, every use passing a purpose gate. Every `/v1` call takes `Authorization: Bearer <token>`. Errors are `{code, message, details}` with stable codes.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        subjects::create,
        subjects::show,
        records::write,
        records::read,
        operation_logs::write,
        consents::record,
        consents::list,
        consents::receipt,
        decisions::decide,
        policy::show,
        policy::text,
        policy::publish,
        holds::place,
        holds::list,
        holds::release,
        sweeps::run,
        disclosures::record,
        disclosures::list,
        notifications::acknowledge,
        notifications::impossible,
        requests::open,
        requests::list,
        requests::show,
        requests::send_verification,
        requests::verify,
        requests::act,
        requests::fulfil,
        requests::notifications,
        media::upload,
        media::list,
        media::show,
        media::delete,
        media::content,
        media::lease,
        media::leased_content,
        media::attach_output,
        media::complete,
        media::release,
        system::healthz,
        system::metrics,
        system::openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    tags(
        (name = "subjects", description = "People whose data is held"),
        (name = "records", description = "Personal data, read and written through the gate"),
        (name = "consents", description = "The append-only consent ledger and its receipts"),
        (name = "decisions", description = "The purpose gate on its own"),
        (name = "policy", description = "The published policy, its text and its versions"),
        (name = "media", description = "Media objects, streamed in and out of encrypted object storage, and their processing leases"),
        (name = "holds", description = "Legal holds, which keep expired records from the sweeper"),
        (name = "retention", description = "The retention sweeper"),
        (name = "disclosures", description = "The disclosure log: hand-overs to processors and authorities, through the policy's sharing rules"),
        (name = "requests", description = "Data-subject requests: receipt with the law's due dates, the queue, identity verification by one-time code, actions, fulfilment (exports as zips) and the notices they send"),
        (name = "notifications", description = "The outbox: erasure, rectification and restriction notices to recipients and verification codes, delivered by signed webhooks, settled by acknowledgement or marked impossible"),
        (name = "system", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// Adds the bearer scheme and the shared error answers.
struct Shared;

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

fn add_error(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error_response(description));
}

fn complete(operation: &mut Operation) {
    // Operations that declare no security of their own are the `/v1` ones.
    if operation.security.is_none() {
        operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        add_error(
            operation,
            "401",
            "No key (`auth.missing`), or an invalid or revoked one (`auth.invalid_key`)",
        );
        add_error(
            operation,
            "400",
            "A malformed id in the path (`request.invalid_id`), query (`request.invalid_query`) or body (`request.malformed_json`)",
        );
        add_error(
            operation,
            "503",
            "The store is unavailable (`store.unavailable`)",
        );
    }
    if operation.request_body.is_some() {
        add_error(
            operation,
            "413",
            "The body is over the size limit (`request.too_large`)",
        );
        add_error(
            operation,
            "415",
            "Wrong or missing content type (`request.unsupported_media_type`)",
        );
        add_error(
            operation,
            "422",
            "The body does not fit the schema (`request.invalid_body`)",
        );
    }
    add_error(
        operation,
        "500",
        "A failure inside the server; the code says which",
    );
}

impl Modify for Shared {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                complete(operation);
            }
        }
    }
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON text, built once.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serialising plain data structures to JSON cannot fail; an empty object is the
        // harmless answer if it ever did.
        serde_json::to_string(&openapi()).unwrap_or_else(|_| "{}".to_owned())
    })
}
