//! `POST /v1/declarations/batch`: a flight's or a ship's manifest at once, from an airline's
//! check-in system or a port's passenger list, as a JSON array or as NDJSON.
//!
//! Each item goes through the very steps of a single declaration ([`crate::prepare`]: bound to
//! the authenticated client, checked, given its id and pass) and gets its own result, in
//! order: accepted with the single 202's body, or rejected with the single 403/422's body.
//! What is accepted is made durable together: produced to Kafka at once and awaited (one
//! deadline for all), and whatever the broker did not acknowledge in time is appended to the
//! spool as one unit, with one fsync ([`ehac_spool::Spool::append_batch`]).
//!
//! Refused whole, with nothing accepted: a body that is not an array of declaration forms
//! (400, the path names the item), an empty one (400), more than `--max-batch-items` (413), and
//! a client whose rate quota does not cover every item now (429 with `Retry-After`; a batch
//! larger than the client's burst never fits, so that is a 413). The quota is charged per item
//! and all at once, so that a manifest is never half accepted for want of quota: the airline
//! retries the same batch, not its missing tail.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ehac_domain::DeclarationForm;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde::Serialize;

use crate::{input, limits, problem, receive, tls, too_many_requests, Accepted, Caller, Gateway, Prepared, Problem, Received, Route};

/// Namespace of the ids of batch items without their own `declaration_id`, derived from the
/// batch's `Idempotency-Key` and the item's index (UUIDv5).
const BATCH_IDEMPOTENCY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6568_6163_2d69_646d_8000_0000_0000_0003);

/// The answer to a batch that was read: one result per item, in the order sent.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BatchAnswer {
    /// Items accepted: durable, each with its declaration id (and pass).
    accepted: usize,
    /// Items refused; the others were accepted all the same.
    rejected: usize,
    results: Vec<BatchItem>,
}

/// One item's result: accepted (the single endpoint's 202 body) or rejected (its 403 or 422
/// body), with the item's position in the request.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchItem {
    Accepted(AcceptedItem),
    Rejected(RejectedItem),
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AcceptedItem {
    /// The item's position in the request, from 0.
    index: usize,
    /// 202, as the single endpoint would have answered.
    status: u16,
    #[serde(flatten)]
    accepted: Accepted,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RejectedItem {
    /// The item's position in the request, from 0.
    index: usize,
    /// What the single endpoint would have answered: 403 (another client's declaration,
    /// channel or port) or 422 (fields need fixing).
    status: u16,
    #[serde(flatten)]
    problem: Problem,
}

pub(crate) async fn submit_batch(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certified: Option<Extension<tls::CertifiedClient>>,
    request: Request,
) -> Response {
    let (outcome, response) = match receive(&gateway, peer, certified.as_ref().map(|c| &c.0), request, Route::Batch).await {
        Ok(received) => {
            let Received { caller, idempotency_key, ndjson, body, _slots } = received;
            handle_batch(&gateway, caller, idempotency_key, ndjson, body).await
        }
        Err(refused) => refused,
    };
    gateway.metrics.batch_requests.with_label_values(&[outcome]).inc();
    response
}

async fn handle_batch(
    gateway: &Arc<Gateway>,
    caller: Caller,
    idempotency_key: Option<String>,
    ndjson: bool,
    body: Result<Bytes, BytesRejection>,
) -> (&'static str, Response) {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = "the batch is larger than this gateway accepts (--max-batch-body-bytes)";
            return ("too_large", problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message, vec![]));
        }
        Err(rejection) => return ("malformed", problem(rejection.status(), "unreadable_body", rejection.body_text(), vec![])),
    };
    let forms = match input::parse_batch(&body, ndjson) {
        Ok(forms) => forms,
        Err(e) => return ("malformed", problem(StatusCode::BAD_REQUEST, "malformed_json", e.to_string(), vec![e.field_error()])),
    };
    drop(body);
    let max = gateway.max_batch_items;
    if forms.is_empty() {
        return ("malformed", problem(StatusCode::BAD_REQUEST, "empty_batch", format!("a batch holds 1 to {max} declarations"), vec![]));
    }
    if forms.len() > max {
        let message = format!("a batch holds at most {max} declarations; this one has {}: split it", forms.len());
        return ("too_large", problem(StatusCode::PAYLOAD_TOO_LARGE, "too_many_items", message, vec![]));
    }
    if let Caller::Client { client_id, client } = &caller {
        let quota = limits::quota(client.rate_per_second, client.burst);
        let n = NonZeroU32::new(forms.len().try_into().unwrap_or(u32::MAX)).expect("not empty");
        match gateway.client_limits.check_n(client_id, quota, n) {
            Ok(()) => {}
            Err(limits::Refused::Wait(secs)) => {
                let whose = format!("for this client (a batch is charged per declaration: {n})");
                return ("rate_limited", too_many_requests(secs, &whose));
            }
            Err(limits::Refused::OverBurst) => {
                let message = format!(
                    "the batch's {n} declarations are more than client {client_id}'s burst of {}: send smaller batches",
                    client.burst
                );
                return ("too_large", problem(StatusCode::PAYLOAD_TOO_LARGE, "batch_over_burst", message, vec![]));
            }
        }
    }

    // Checking and signing hundreds of declarations takes milliseconds of CPU: off the async
    // workers, so the requests sharing them are not held up.
    let (g, key) = (gateway.clone(), idempotency_key);
    let checked = tokio::task::spawn_blocking(move || {
        forms
            .into_iter()
            .enumerate()
            .map(|(index, form)| {
                crate::prepare(&g, &caller, form, |client_id, form| batch_declaration_id(client_id, form, key.as_deref(), index))
            })
            .collect::<Vec<_>>()
    })
    .await;
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => {
            tracing::error!(error = %e, "checking a batch panicked");
            return ("internal", problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the batch could not be checked", vec![]));
        }
    };
    let ready: Vec<&Prepared> = checked.iter().filter_map(|item| item.as_ref().ok()).collect();
    if let Err(response) = make_durable(gateway, &ready).await {
        gateway.metrics.batch_items.with_label_values(&["unavailable"]).inc_by(checked.len() as u64);
        return ("unavailable", response);
    }

    let accepted = ready.len();
    let rejected = checked.len() - accepted;
    let results = checked
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Ok(prepared) => BatchItem::Accepted(AcceptedItem { index, status: 202, accepted: prepared.accepted }),
            Err(refusal) => {
                gateway.metrics.batch_items.with_label_values(&[refusal.outcome]).inc();
                BatchItem::Rejected(RejectedItem { index, status: refusal.status.as_u16(), problem: refusal.problem })
            }
        })
        .collect();
    gateway.metrics.batch_items.with_label_values(&["accepted"]).inc_by(accepted as u64);
    let (outcome, status) = match (accepted, rejected) {
        (_, 0) => ("accepted", StatusCode::OK),
        (0, _) => ("rejected", StatusCode::MULTI_STATUS),
        _ => ("partial", StatusCode::MULTI_STATUS),
    };
    (outcome, (status, Json(BatchAnswer { accepted, rejected, results })).into_response())
}

/// Makes every prepared item durable, or none is reported accepted: all are produced at once
/// and awaited until one deadline; those the broker did not acknowledge by then (or at all,
/// while the spool shows it away) are appended to the spool as one batch, one fsync.
async fn make_durable(gateway: &Gateway, batch: &[&Prepared]) -> Result<(), Response> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut unacknowledged: Vec<&Prepared> = batch.to_vec();
    if gateway.tries_the_broker_first() {
        let deadline = tokio::time::Instant::now() + gateway.produce_timeout;
        let sends = batch.iter().map(|prepared| {
            let record = FutureRecord::to(&gateway.topic).key(&prepared.accepted.declaration_id).payload(&prepared.payload);
            tokio::time::timeout_at(deadline, gateway.producer.send(record, Timeout::After(gateway.produce_timeout)))
        });
        let acks = futures::future::join_all(sends).await;
        unacknowledged = batch.iter().zip(acks).filter(|(_, ack)| !matches!(ack, Ok(Ok(_)))).map(|(prepared, _)| *prepared).collect();
        if unacknowledged.is_empty() {
            return Ok(());
        }
        // librdkafka may still deliver some later; the spooled copies are then duplicates with
        // the same ids and keys, which the sink drops.
        tracing::warn!(
            unacknowledged = unacknowledged.len(),
            items = batch.len(),
            "broker did not acknowledge the whole batch in time; spooling the rest"
        );
    }
    let records: Vec<(&[u8], &[u8])> =
        unacknowledged.iter().map(|prepared| (prepared.accepted.declaration_id.as_bytes(), &prepared.payload[..])).collect();
    let appended = gateway.spool.append_batch(&records).await;
    gateway.note_spool_written();
    match appended {
        Ok(()) => {
            gateway.metrics.spooled.inc_by(unacknowledged.len() as u64);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, items = unacknowledged.len(), "could not spool a batch: refusing it");
            Err(crate::not_stored("the batch"))
        }
    }
}

/// A batch item's id, scoped by the client like a single declaration's: from the item's own
/// `declaration_id`, else from the batch's `Idempotency-Key` and the item's index (so a retry
/// of the same batch, in the same order, gets the same ids), else a new UUIDv7.
fn batch_declaration_id(client_id: &str, form: &DeclarationForm, idempotency_key: Option<&str>, index: usize) -> String {
    match (&form.declaration_id, idempotency_key) {
        (Some(own), _) => crate::client_declaration_id(client_id, own),
        // The key is printable ASCII: no newline can make two (key, index) pairs collide.
        (None, Some(key)) => {
            uuid::Uuid::new_v5(&BATCH_IDEMPOTENCY_NAMESPACE, format!("{client_id}\n{key}\n{index}").as_bytes()).to_string()
        }
        (None, None) => uuid::Uuid::now_v7().to_string(),
    }
}
