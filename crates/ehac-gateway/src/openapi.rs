//! The public API's contract, OpenAPI 3.1, derived with utoipa from the very types serde reads
//! (`DeclarationForm`) and writes (`Accepted`, `Problem`), so it cannot drift from the code.
//! Served at `GET /openapi.json`; a copy is committed as `schemas/openapi.json` (a test checks
//! that it equals this), and `ehac-gateway --print-openapi` prints it.
//!
//! What the schema cannot say, the descriptions do: every field is optional in the schema
//! because a missing one is a field error in the 422 (all gaps at once), not a parse failure.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::batch::{AcceptedItem, BatchAnswer, BatchItem, RejectedItem};
use crate::{Accepted, Problem};
use ehac_domain::form::{Address, Channel, Health, LatestTest, Sex, TestKind, TestResult, TransportMode, Traveller, Trip};
use ehac_domain::{DeclarationForm, FieldError};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "e-HAC gateway",
        description = "Submit electronic Health Alert Card declarations. Every request carries a client's API key; \
                       a 202 means the declaration is durable (in Kafka or on the gateway's disk) and carries the \
                       traveller's signed pass when the gateway has an issuing key.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(submit_declaration, submit_batch),
    components(schemas(
        DeclarationForm, Traveller, Trip, Address, Health, LatestTest, Channel, Sex, TransportMode, TestKind, TestResult,
        Accepted, Problem, FieldError, BatchAnswer, BatchItem, AcceptedItem, RejectedItem
    )),
    modifiers(&ApiKey),
    security(("api_key" = [])),
)]
struct Contract;

/// `Authorization: Bearer ehac_<key id>_<secret>_<checksum>`.
struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("ehac_<key id>_<secret>_<checksum>")
            .description(Some("The client's API key, issued with `ehac clients add`."))
            .build();
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// Submit one declaration.
///
/// The authenticated client is the declaration's `client_id` (an empty one is filled in,
/// another one is refused with 403). A retry with the same `Idempotency-Key`, or the same
/// `declaration_id`, by the same client gets the same declaration id.
#[utoipa::path(
    post,
    path = "/v1/declarations",
    operation_id = "submitDeclaration",
    request_body(content = DeclarationForm, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$",
         description = "Printable ASCII, e.g. a UUID: a retry with the same key gets the same declaration id."),
    ),
    responses(
        (status = 202, description = "Accepted and durable; the pipeline owes it a row.", body = Accepted),
        (status = 400, description = "Malformed: not JSON, unknown field, duplicate key, nested too deep, wrong type, \
                                      or a bad Idempotency-Key. `errors[].field` is the path.", body = Problem),
        (status = 401, description = "No API key, a malformed one, or one that is not valid now.", body = Problem,
         headers(("WWW-Authenticate" = String, description = "Bearer realm=\"ehac\""))),
        (status = 403, description = "The key's client may not submit this: another client_id, channel or departure port.",
         body = Problem),
        (status = 404, description = "No such route.", body = Problem),
        (status = 408, description = "The body did not arrive in time after the headers (5 s, plus 1 s per 32 KiB \
                                      declared, by default); the connection is closed. Nothing was accepted: send it \
                                      again with the same Idempotency-Key.", body = Problem,
         headers(("Connection" = String, description = "close (HTTP/1.1)"))),
        (status = 413, description = "Larger than the gateway accepts (64 KiB by default).", body = Problem),
        (status = 415, description = "Not sent as Content-Type: application/json.", body = Problem),
        (status = 422, description = "Read, but fields need fixing: every field error at once, with its code.", body = Problem),
        (status = 429, description = "Over the client's or the address's rate limit, or the client already has as many \
                                      requests in flight as it may (64 by default); nothing was accepted. Retry after \
                                      Retry-After seconds with the same Idempotency-Key.", body = Problem,
         headers(("Retry-After" = u64, description = "Whole seconds, at least 1."))),
        (status = 503, description = "The gateway could not make it durable (spool full), or has too many requests in \
                                      flight; retry with the same Idempotency-Key.", body = Problem,
         headers(("Retry-After" = u64, description = "When too many requests are in flight: 1."))),
    ),
)]
#[allow(dead_code)] // Only its attribute is used: the handler is `crate::submit`.
fn submit_declaration() {}

/// Submit many declarations at once: a flight's manifest.
///
/// A JSON array of declarations (or, with `Content-Type: application/x-ndjson`, one declaration
/// per line), at most 500 by default (`--max-batch-items`). Every item is read with the same
/// rules as a single declaration and gets its own result, in order: accepted (durable, with its
/// id and pass) or rejected (403 or 422, with every field error). The accepted ones are made
/// durable together, in Kafka or in the gateway's spool, before the answer. Each item counts
/// against the client's rate quota; a batch the quota cannot cover now is refused whole (429).
/// Idempotency is per item: an item's own `declaration_id`, else the batch's `Idempotency-Key`
/// with the item's index, so a retry of the same batch in the same order gets the same ids.
#[utoipa::path(
    post,
    path = "/v1/declarations/batch",
    operation_id = "submitDeclarationBatch",
    request_body(content = Vec<DeclarationForm>, content_type = "application/json",
                 description = "1 to 500 declarations. NDJSON (application/x-ndjson) is read too."),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$",
         description = "Printable ASCII, e.g. a UUID: item i of a retry with the same key gets the same declaration id \
                        (items with their own declaration_id keep theirs)."),
    ),
    responses(
        (status = 200, description = "Every item accepted and durable.", body = BatchAnswer),
        (status = 207, description = "Read; some or all items rejected, each with its errors; the accepted ones are \
                                      durable.", body = BatchAnswer),
        (status = 400, description = "Malformed: not a JSON array of declarations (`errors[].field` starts with the \
                                      item's index, `[3].trip.seat`), an empty batch, or a bad Idempotency-Key. \
                                      Nothing was accepted.", body = Problem),
        (status = 401, description = "No API key, a malformed one, or one that is not valid now.", body = Problem,
         headers(("WWW-Authenticate" = String, description = "Bearer realm=\"ehac\""))),
        (status = 403, description = "The API key and the connection's client certificate name different clients.",
         body = Problem),
        (status = 408, description = "The body did not arrive in time after the headers (5 s, plus 1 s per 32 KiB \
                                      declared, by default); the connection is closed. Nothing was accepted.",
         body = Problem, headers(("Connection" = String, description = "close (HTTP/1.1)"))),
        (status = 413, description = "Larger than the gateway accepts (4 MiB), more items than --max-batch-items, or \
                                      more than the client's burst. Nothing was accepted.", body = Problem),
        (status = 415, description = "Not sent as application/json or application/x-ndjson.", body = Problem),
        (status = 429, description = "The client's quota does not cover every item now, the address's limit, or the \
                                      client's requests in flight; nothing was accepted. Retry the whole batch after Retry-After seconds with the \
                                      same Idempotency-Key.", body = Problem,
         headers(("Retry-After" = u64, description = "Whole seconds, at least 1."))),
        (status = 503, description = "The batch could not be made durable (spool full), or the gateway has too many \
                                      requests in flight; nothing was accepted. Retry with the same Idempotency-Key.",
         body = Problem, headers(("Retry-After" = u64, description = "When too many requests are in flight: 1."))),
    ),
)]
#[allow(dead_code)] // Only its attribute is used: the handler is `crate::batch::submit_batch`.
fn submit_batch() {}

/// The batch size the contract states: the gateway's default `--max-batch-items`.
const DEFAULT_MAX_BATCH_ITEMS: usize = 500;

/// The contract as pretty JSON, as served and committed.
pub fn json() -> String {
    let mut openapi = Contract::openapi();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut contract = serde_json::to_value(&openapi).expect("the contract serialises");
    headers_are_never_null(&mut contract);
    // utoipa has no attribute for the bounds of an array request body.
    let batch = &mut contract["paths"]["/v1/declarations/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    batch["minItems"] = 1.into();
    batch["maxItems"] = DEFAULT_MAX_BATCH_ITEMS.into();
    let mut text = serde_json::to_string_pretty(&contract).expect("JSON serialises");
    text.push('\n');
    text
}

/// utoipa writes an optional header's schema as `["string", "null"]`; a header is absent or a
/// string, never null, and schemathesis would send the literal text "null" for it.
fn headers_are_never_null(contract: &mut serde_json::Value) {
    let Some(paths) = contract["paths"].as_object_mut() else { return };
    for operation in paths.values_mut().filter_map(|p| p.as_object_mut()).flat_map(|p| p.values_mut()) {
        let Some(parameters) = operation["parameters"].as_array_mut() else { continue };
        for parameter in parameters.iter_mut().filter(|p| p["in"] == "header") {
            if let Some(types) = parameter["schema"]["type"].as_array() {
                let types: Vec<_> = types.iter().filter(|t| *t != "null").cloned().collect();
                if let [only] = types.as_slice() {
                    parameter["schema"]["type"] = only.clone();
                }
            }
        }
    }
}
