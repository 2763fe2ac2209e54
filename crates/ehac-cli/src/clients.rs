//! `ehac clients add|rotate|revoke|list --file F`: manage the gateway's client registry file.
//! A new key's secret is printed once and never stored; the gateway keeps its SHA-256 only and
//! picks changes up within a second.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ehac_clients::{file, Client, ClientRegistry, KeyStatus};
use ehac_domain::form::Channel;

#[derive(Args, Debug)]
pub struct ClientsArgs {
    /// The registry file the gateway reads (`--clients-file`).
    #[arg(long, env = "EHAC_GATEWAY_CLIENTS_FILE", global = true, default_value = "clients.json")]
    pub file: PathBuf,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Register a client and print its first key.
    Add {
        client_id: String,
        /// The only channel its declarations may name (app, web, kiosk); any when absent.
        #[arg(long, value_parser = parse_channel)]
        channel: Option<Channel>,
        /// Departure ports its declarations may name, comma-separated (e.g. CGK); any when absent.
        #[arg(long, value_delimiter = ',')]
        allowed_ports: Option<Vec<String>>,
        /// Sustained declarations per second (0: no limit).
        #[arg(long, default_value_t = 50)]
        rate_per_second: u32,
        /// Declarations at once above the sustained rate: a planeload at a kiosk bank.
        #[arg(long, default_value_t = 300)]
        burst: u32,
        /// The key stops working at this instant (RFC 3339).
        #[arg(long)]
        not_after: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Issue a new key for a client and let its other keys run out after the overlap.
    Rotate {
        client_id: String,
        /// How long the old keys keep working, in hours.
        #[arg(long, default_value_t = 24)]
        overlap_hours: i64,
    },
    /// Revoke one key (by key id) or every key of a client (`--client`).
    Revoke {
        /// A key id (the part after `ehac_`), or a client id with `--client`.
        id: String,
        #[arg(long)]
        client: bool,
    },
    /// Clients and their keys (ids, status, expiry; never secrets).
    List,
}

fn parse_channel(text: &str) -> Result<Channel, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| format!("{text:?} is not one of app, web, kiosk"))
}

/// Applies `action` to the file and returns what to print.
pub fn run(args: &ClientsArgs) -> anyhow::Result<String> {
    run_at(&args.file, &args.action, chrono::Utc::now())
}

pub fn run_at(path: &Path, action: &Action, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<String> {
    let mut registry = file::load_or_default(path)?;
    let out = match action {
        Action::Add { client_id, channel, allowed_ports, rate_per_second, burst, not_after } => {
            let client =
                Client { channel: *channel, allowed_ports: allowed_ports.clone(), rate_per_second: *rate_per_second, burst: *burst };
            registry.add_client(client_id, client)?;
            let token = registry.issue_key(client_id, now, *not_after)?;
            file::save(path, &registry)?;
            new_key(client_id, &token.key_id, &token.to_string())
        }
        Action::Rotate { client_id, overlap_hours } => {
            let token = registry.rotate(client_id, now, chrono::Duration::hours(*overlap_hours))?;
            file::save(path, &registry)?;
            format!(
                "{}old keys of {client_id} stop working at {}\n",
                new_key(client_id, &token.key_id, &token.to_string()),
                now + chrono::Duration::hours(*overlap_hours)
            )
        }
        Action::Revoke { id, client: true } => {
            let revoked = registry.revoke_client(id)?;
            file::save(path, &registry)?;
            format!("revoked {revoked} key(s) of client {id}\n")
        }
        Action::Revoke { id, client: false } => {
            registry.revoke_key(id)?;
            file::save(path, &registry)?;
            format!("revoked key {id}\n")
        }
        Action::List => list(&registry, now),
    };
    Ok(out)
}

fn new_key(client_id: &str, key_id: &str, token: &str) -> String {
    format!("client {client_id}: new key {key_id}\n{token}\nthis is the only time the key is shown: store it in the client's secret store now\n")
}

fn list(registry: &ClientRegistry, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::from("client\tchannel\tports\trate/s\tburst\tkey\tstatus\tnot_after\n");
    for (client_id, client) in &registry.clients {
        let channel = client.channel.map(|c| format!("{c:?}").to_lowercase()).unwrap_or_else(|| "any".into());
        let ports = client.allowed_ports.as_ref().map(|p| p.join(",")).unwrap_or_else(|| "any".into());
        let keys: Vec<_> = registry.keys.iter().filter(|(_, k)| k.client_id == *client_id).collect();
        if keys.is_empty() {
            out.push_str(&format!("{client_id}\t{channel}\t{ports}\t{}\t{}\t-\t-\t-\n", client.rate_per_second, client.burst));
        }
        for (key_id, key) in keys {
            let status = match key.status {
                KeyStatus::Revoked => "revoked",
                KeyStatus::Active if key.not_after.is_some_and(|end| end <= now) => "expired",
                KeyStatus::Active => "active",
            };
            let not_after = key.not_after.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{client_id}\t{channel}\t{ports}\t{}\t{}\t{key_id}\t{status}\t{not_after}\n",
                client.rate_per_second, client.burst
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_in(output: &str) -> String {
        output.lines().find(|l| l.starts_with("ehac_")).expect("the new key is printed").to_owned()
    }

    #[test]
    fn add_rotate_revoke_and_list_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.json");
        let now = chrono::Utc::now();
        let add = Action::Add {
            client_id: "kiosk-cgk-t3".into(),
            channel: Some(Channel::Kiosk),
            allowed_ports: Some(vec!["CGK".into()]),
            rate_per_second: 20,
            burst: 300,
            not_after: None,
        };
        let first = token_in(&run_at(&path, &add, now).unwrap());
        assert!(run_at(&path, &add, now).is_err(), "a client is added once");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&first[18..61]), "the secret is not stored");

        let second = token_in(&run_at(&path, &Action::Rotate { client_id: "kiosk-cgk-t3".into(), overlap_hours: 1 }, now).unwrap());
        let registry = file::load(&path).unwrap();
        assert!(registry.authenticate(&first, now).is_ok() && registry.authenticate(&second, now).is_ok());
        assert!(registry.authenticate(&first, now + chrono::Duration::hours(2)).is_err());

        let second_id = ehac_clients::Token::parse(&second).unwrap().key_id;
        run_at(&path, &Action::Revoke { id: second_id.clone(), client: false }, now).unwrap();
        assert!(file::load(&path).unwrap().authenticate(&second, now).is_err());
        let listed = run_at(&path, &Action::List, now).unwrap();
        assert!(listed.contains(&format!("kiosk-cgk-t3\tkiosk\tCGK\t20\t300\t{second_id}\trevoked")), "{listed}");
        assert!(!listed.contains("ehac_"), "no secret is listed");

        assert_eq!(
            run_at(&path, &Action::Revoke { id: "kiosk-cgk-t3".into(), client: true }, now).unwrap(),
            "revoked 1 key(s) of client kiosk-cgk-t3\n"
        );
    }
}
