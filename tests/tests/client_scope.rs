//! Declaration ids belong to the authenticated client: two clients that happen to
//! send the same `declaration_id`, or the same `Idempotency-Key`, get two declarations and two
//! rows in ClickHouse; a retry by the same client gets the same id and no second row. A gateway
//! with a client registry, in front of the shared pipeline's real broker and ClickHouse.

use std::time::Duration;

use ehac_domain::sample::Flaw;
use ehac_tests::{declarations, pipeline};
use tokio_util::sync::CancellationToken;

async fn post(http: &reqwest::Client, gateway: &str, token: &str, body: &serde_json::Value, key: Option<&str>) -> String {
    let mut request = http.post(format!("{gateway}/v1/declarations")).bearer_auth(token).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{answer}");
    answer["declaration_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_with_the_same_ids_get_two_rows_and_a_retry_gets_the_same_one() {
    let p = pipeline();
    let dir = tempfile::tempdir().unwrap();
    let clients_file = dir.path().join("clients.json");
    let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let (a, b) = (format!("kiosk-a-{run}"), format!("kiosk-b-{run}"));
    let tokens = ehac_clients::provision_for_tests(&clients_file, &[&a, &b]).unwrap();
    let shutdown = CancellationToken::new();
    let config = p.gateway_config(dir.path().join("spool"), clients_file.clone(), 5_000);
    let running = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    let gateway = format!("http://{}", running.addr);
    let http = reqwest::Client::new();

    // The body names no client: each key's client is the declaration's.
    let mut forms = declarations(2, "", Flaw::None, 1313).into_iter().map(|f| serde_json::to_value(f).unwrap());
    let mut with_own_id = forms.next().unwrap();
    with_own_id["declaration_id"] = "0001".into();
    let from_a = post(&http, &gateway, &tokens[0], &with_own_id, None).await;
    let from_b = post(&http, &gateway, &tokens[1], &with_own_id, None).await;
    let retried_by_a = post(&http, &gateway, &tokens[0], &with_own_id, None).await;
    assert_ne!(from_a, from_b, "the same declaration_id from two clients is two declarations");
    assert_eq!(retried_by_a, from_a, "a retry by the same client is the same declaration");
    assert_eq!(from_a, ehac_gateway::client_declaration_id(&a, "0001"));

    let by_key = forms.next().unwrap();
    let keyed_a = post(&http, &gateway, &tokens[0], &by_key, Some("retry-me-42")).await;
    let keyed_b = post(&http, &gateway, &tokens[1], &by_key, Some("retry-me-42")).await;
    let keyed_retry = post(&http, &gateway, &tokens[0], &by_key, Some("retry-me-42")).await;
    assert_ne!(keyed_a, keyed_b);
    assert_eq!(keyed_retry, keyed_a);

    let ids = [&from_a, &from_b, &keyed_a, &keyed_b].map(|id| format!("'{id}'")).join(",");
    let rows = format!("SELECT count() FROM ehac.declarations WHERE declaration_id IN ({ids})");
    assert_eq!(p.wait_for_count(&rows, 4, Duration::from_secs(90)).await, 4);
    // Let a duplicate of a retry arrive, if the sink were to let one through.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.sql(&rows).await.trim(), "4", "four declarations, four rows: the retries added none");
    let owners = p
        .sql(&format!(
            "SELECT client_id, count() FROM ehac.declarations WHERE declaration_id IN ({ids}) GROUP BY client_id ORDER BY client_id"
        ))
        .await;
    assert_eq!(owners, format!("{a}\t2\n{b}\t2\n"), "each row is stored as its authenticated client's");
    shutdown.cancel();
}
