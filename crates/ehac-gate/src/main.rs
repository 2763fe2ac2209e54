//! `ehac-gate`: the gate scanner command. Verifies e-HAC passes offline against a root-signed
//! trust list; creates root and issuing keys; builds and maintains the trust list; draws and
//! reads pass QR codes. The format and the checks live in `ehac-pass`; this is only files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::{Parser, Subcommand};
mod serve;

use ehac_pass::{IssuePolicy, IssuingKey, Kid, PassClaims, RootKey, RootPublicKey, Signer, Triage, TrustList, TrustedKey, Verdict};

#[derive(Parser)]
#[command(name = "ehac-gate", version, about = "Gate scanner for signed e-HAC passes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a pass (text, or read from a QR image): prints ACCEPT, REJECT or DEGRADED with the
    /// reason and the officer view. Exit code 0 ACCEPT, 1 REJECT, 2 DEGRADED.
    Verify {
        #[arg(long)]
        trust_list: PathBuf,
        /// The pinned root public key (SPKI PEM or JWK). Repeat during a root rotation.
        #[arg(long, required = true)]
        root_key: Vec<PathBuf>,
        /// IATA code of the airport this gate stands in.
        #[arg(long)]
        airport: String,
        /// Judge at this time (RFC 3339) instead of now.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        #[arg(long, conflicts_with = "pass")]
        qr_image: Option<PathBuf>,
        #[arg(required_unless_present = "qr_image")]
        pass: Option<String>,
    },
    /// Create keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Build and maintain the trust list (each change is signed again with the root key).
    TrustList {
        #[command(subcommand)]
        action: TrustAction,
    },
    /// Issue a pass, or draw one as a QR code.
    Pass {
        #[command(subcommand)]
        action: PassAction,
    },
    /// Serve the gate app (the officer's scanner, embedded in this binary) and the current
    /// signed trust list to the gates on the local network.
    #[command(long_about = SERVE_ABOUT)]
    Serve {
        /// Address to listen on (port 0 picks a free one and prints it).
        #[arg(long, env = "EHAC_GATE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The published trust list (the file the `trust-list` commands sign), served as
        /// /trust-list.cose and read again at every request.
        #[arg(long, env = "EHAC_GATE_TRUST_LIST")]
        trust_list: PathBuf,
        /// Serve HTTPS with this certificate chain (PEM), for a gate server without a proxy in
        /// front; read at start (restart after renewing it).
        #[arg(long, env = "EHAC_GATE_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, env = "EHAC_GATE_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

const SERVE_ABOUT: &str = "\
Serve the gate app (the officer's scanner, embedded in this binary) and the current signed trust
list to the gates on the local network.

The app runs in the browser of the officer's phone or tablet. It reads the pass QR with the camera
and verifies the pass on the device, against the trust list it keeps (IndexedDB); after the first
load a service worker serves it with no network at all, and nothing scanned leaves the device. The
only request it makes is for /trust-list.cose, which it installs only if the root signature
verifies against the pinned root key(s) and the version is newer than the installed one.

Deployment. Browsers give a page the camera only in a secure context: https://, or http://localhost
on the device itself. So on a gate network the devices reach the server over HTTPS:
  - get a certificate for the server's name (e.g. gate.cgk.example), either from the airport's
    internal CA whose root certificate is installed on every officer's device (MDM), or a public
    certificate obtained with a DNS challenge for a name that resolves to the LAN address;
  - serve with it directly: `ehac-gate serve --listen 0.0.0.0:443 --tls-cert gate.pem --tls-key
    gate.key.pem --trust-list /srv/ehac/trust-list.cose`; or run `ehac-gate serve --listen
    127.0.0.1:8080 ...` behind a TLS-terminating reverse proxy (nginx, Caddy, HAProxy) that
    holds the certificate and renews it;
  - open https://gate.cgk.example/ once on each device, set up the airport and paste the pinned
    root public key (root.pub.pem, checked against the kid on paper), and add it to the home
    screen. From then on the device works offline; it fetches a newer trust list whenever it can
    reach the server (every five minutes and when the network comes back).
Plain http:// to a LAN address does not work: the camera stays off and only manual entry is left.

Publishing a new list is re-signing the file (`ehac-gate trust-list ...`, written atomically);
this server reads it at every request. The built app (web/gate/dist) also works from any static
web server: serve its files with `Cache-Control: no-cache`, sw.js as text/javascript, the
.webmanifest as application/manifest+json, and the trust list next to index.html as
trust-list.cose with `Cache-Control: no-store`.";

#[derive(Subcommand)]
enum KeysAction {
    /// A root key: root.key.pem (PKCS#8, keep offline) and root.pub.pem (pin in every gate).
    Root {
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// A regional issuing key: issuing-REGION-KID.key.json (private JWK, for that region's
    /// gateway) and issuing-REGION-KID.pub.json (for the trust list).
    Issuing {
        #[arg(long)]
        region: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ListFiles {
    /// The trust-list file (COSE_Sign1 around the JSON).
    #[arg(long)]
    trust_list: PathBuf,
    /// The root private key that signs it.
    #[arg(long)]
    root_key: PathBuf,
}

#[derive(Subcommand)]
enum TrustAction {
    /// A new, empty trust list.
    Build {
        #[command(flatten)]
        files: ListFiles,
        /// Gates report DEGRADED with a list older than this.
        #[arg(long, default_value_t = 24)]
        max_age_hours: i64,
    },
    /// Trust an issuing key (its public JWK file).
    AddKey {
        #[command(flatten)]
        files: ListFiles,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        valid_from: Option<DateTime<Utc>>,
        #[arg(long, default_value_t = 400)]
        valid_days: i64,
    },
    /// The key signs no more passes; it stays listed until its last pass expires.
    RetireKey {
        #[command(flatten)]
        files: ListFiles,
        #[arg(long)]
        kid: String,
        /// The expiry of the last pass it signed (default: now plus the default pass window
        /// and two days of booked arrivals).
        #[arg(long)]
        last_pass_expires: Option<DateTime<Utc>>,
    },
    /// A compromised key: removed at once, with every pass it signed.
    RemoveKey {
        #[command(flatten)]
        files: ListFiles,
        #[arg(long)]
        kid: String,
    },
    /// Revoke one pass (given as its text, or as its id and expiry).
    Revoke {
        #[command(flatten)]
        files: ListFiles,
        #[arg(long, conflicts_with_all = ["pass_id", "expires"])]
        pass: Option<String>,
        #[arg(long, requires = "expires")]
        pass_id: Option<String>,
        #[arg(long)]
        expires: Option<DateTime<Utc>>,
    },
    /// Drop revocations of expired passes and retired keys past their last pass.
    Purge {
        #[command(flatten)]
        files: ListFiles,
    },
    /// Print the list's JSON after checking its signature.
    Show {
        #[arg(long)]
        trust_list: PathBuf,
        #[arg(long, required = true)]
        root_key: Vec<PathBuf>,
    },
    /// On a gate: replace the installed list with an offered one (fetched, or from a USB
    /// stick) only if it verifies against the pinned roots and is newer. An older list is
    /// refused (exit 1): it is validly signed forever and may still list a removed key.
    Install {
        /// The list the gate verifies with (`verify --trust-list`); created if absent.
        #[arg(long)]
        trust_list: PathBuf,
        /// The list offered.
        #[arg(long)]
        offered: PathBuf,
        #[arg(long, required = true)]
        root_key: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PassAction {
    /// Sign a pass with an issuing key (for demos and tests; the gateway issues real ones).
    Issue {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        dob: NaiveDate,
        #[arg(long)]
        flight: String,
        #[arg(long)]
        airport: String,
        /// Scheduled arrival, RFC 3339.
        #[arg(long)]
        arrival: DateTime<Utc>,
        #[arg(long, value_parser = ["green", "yellow", "red"])]
        triage: String,
        /// Hours after arrival the pass stays valid.
        #[arg(long, default_value_t = 24)]
        window_hours: i64,
        #[arg(long)]
        now: Option<DateTime<Utc>>,
    },
    /// Draw a pass as a QR code (error-correction level Q).
    Qr {
        #[arg(long)]
        png: Option<PathBuf>,
        #[arg(long)]
        svg: Option<PathBuf>,
        pass: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ehac-gate: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Verify { trust_list, root_key, airport, now, qr_image, pass } => {
            let roots = read_roots(&root_key)?;
            let trust = ehac_pass::VerifiedTrustList::load(&read(&trust_list)?, &roots).context("trust list refused")?;
            let pass = match (pass, qr_image) {
                (Some(pass), _) => pass,
                (None, Some(png)) => decode_qr(&png)?,
                (None, None) => bail!("give a pass or --qr-image"),
            };
            let verdict = ehac_pass::verify(pass.trim(), &trust, &airport, now.unwrap_or_else(Utc::now));
            Ok(print_verdict(&verdict))
        }
        Command::Keys { action: KeysAction::Root { out } } => {
            let root = RootKey::generate()?;
            write_secret(&out.join("root.key.pem"), &root.to_pkcs8_pem())?;
            write(&out.join("root.pub.pem"), root.public().to_pem())?;
            println!("root key {} in {}", root.kid(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { action: KeysAction::Issuing { region, out } } => {
            let key = IssuingKey::generate(&region)?;
            let stem = format!("issuing-{region}-{}", key.kid());
            write_secret(&out.join(format!("{stem}.key.json")), &key.to_jwk())?;
            write(&out.join(format!("{stem}.pub.json")), key.public_jwk())?;
            println!("issuing key {} for {region} in {}", key.kid(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::TrustList { action } => trust_list(action),
        Command::Serve { listen, trust_list, tls_cert, tls_key } => {
            let tls = tls_cert.zip(tls_key).map(|(cert, key)| serve::TlsFiles { cert, key });
            serve::run(listen, trust_list, tls)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pass { action: PassAction::Issue { key, name, dob, flight, airport, arrival, triage, window_hours, now } } => {
            let key = IssuingKey::parse(&read_text(&key)?, None)?;
            let claims = PassClaims {
                pass_id: random_pass_id()?,
                traveller_name: name,
                date_of_birth: dob,
                flight,
                arrival_airport: airport,
                arrival_at: arrival,
                arrival_date: arrival.date_naive(),
                triage: Triage::parse(&triage).expect("clap checked the value"),
            };
            let signer = Signer::new(&key, IssuePolicy { valid_after_arrival: Duration::hours(window_hours) });
            println!("{}", signer.issue(&claims, now.unwrap_or_else(Utc::now))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Pass { action: PassAction::Qr { png, svg, pass } } => {
            if png.is_none() && svg.is_none() {
                bail!("give --png and/or --svg");
            }
            let code = qrcode::QrCode::with_error_correction_level(pass.trim().as_bytes(), qrcode::EcLevel::Q)?;
            if let Some(png) = png {
                let image = render_png(&code);
                image.save(&png).with_context(|| format!("writing {}", png.display()))?;
            }
            if let Some(svg) = svg {
                let text = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(400, 400).build();
                write(&svg, &text)?;
            }
            let qrcode::Version::Normal(version) = code.version() else { unreachable!("passes use normal QR codes") };
            println!("QR version {version} at level Q, {} modules a side, {} characters", code.width(), pass.trim().len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One edit of the trust list, returning what to tell the operator.
type Change = Box<dyn FnOnce(&mut TrustList) -> Result<String>>;

fn trust_list(action: TrustAction) -> Result<ExitCode> {
    // Whole seconds: the list is read by people and by other implementations.
    let now = chrono::DurationRound::duration_trunc(Utc::now(), Duration::seconds(1))?;
    let (files, change): (ListFiles, Change) = match action {
        TrustAction::Build { files, max_age_hours } => {
            if files.trust_list.exists() {
                bail!("{} exists; the other commands change it", files.trust_list.display());
            }
            let root = RootKey::parse(&read_text(&files.root_key)?)?;
            let mut list = TrustList::new(Duration::hours(max_age_hours));
            write(&files.trust_list, list.sign(&root, now))?;
            println!("trust list version {} signed by {}", list.version, root.kid());
            return Ok(ExitCode::SUCCESS);
        }
        TrustAction::AddKey { files, key, valid_from, valid_days } => {
            let from = valid_from.unwrap_or(now);
            let entry = TrustedKey::from_public_jwk(&read_text(&key)?, from, from + Duration::days(valid_days))?;
            (
                files,
                Box::new(move |list| {
                    Ok(format!("added {} ({})", entry.kid, entry.region)).and_then(|m| list.add_key(entry).map(|_| m).map_err(Into::into))
                }),
            )
        }
        TrustAction::RetireKey { files, kid, last_pass_expires } => {
            let kid = parse_kid(&kid)?;
            let until = last_pass_expires.unwrap_or(now + IssuePolicy::default().valid_after_arrival + Duration::days(2));
            (
                files,
                Box::new(move |list| {
                    list.retire_key(kid, until).map(|_| format!("retired {kid}: listed until {until}")).map_err(Into::into)
                }),
            )
        }
        TrustAction::RemoveKey { files, kid } => {
            let kid = parse_kid(&kid)?;
            (files, Box::new(move |list| list.remove_key(kid).map(|k| format!("removed {} ({})", k.kid, k.region)).map_err(Into::into)))
        }
        TrustAction::Revoke { files, pass, pass_id, expires } => {
            let (id, expires) = match (pass, pass_id, expires) {
                (Some(pass), _, _) => {
                    let pass = ehac_pass::inspect_unverified(pass.trim()).map_err(|r| anyhow::anyhow!("not a readable pass: {r}"))?;
                    (pass.pass_id, pass.view.expires_at)
                }
                (None, Some(id), Some(expires)) => (hex::decode(id).context("--pass-id is hex")?, expires),
                _ => bail!("give --pass, or --pass-id with --expires"),
            };
            (
                files,
                Box::new(move |list| {
                    list.revoke(&id, expires);
                    Ok(format!("revoked {} until {expires}", hex::encode(&id)))
                }),
            )
        }
        TrustAction::Purge { files } => {
            (files, Box::new(move |list| Ok(list.purge(now)).map(|(k, r)| format!("purged {k} keys and {r} revocations"))))
        }
        TrustAction::Show { trust_list, root_key } => {
            let list = TrustList::open(&read(&trust_list)?, &read_roots(&root_key)?)?;
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(ExitCode::SUCCESS);
        }
        TrustAction::Install { trust_list, offered, root_key } => return install(&trust_list, &offered, &read_roots(&root_key)?),
    };
    let root = RootKey::parse(&read_text(&files.root_key)?)?;
    let mut list =
        TrustList::open(&read(&files.trust_list)?, &[root.public()]).context("the trust list does not verify with this root key")?;
    let message = change(&mut list)?;
    let bytes = list.sign(&root, now);
    // Write beside and rename, so a gate fetching the file never reads half of it.
    let partial = files.trust_list.with_extension("partial");
    write(&partial, bytes)?;
    std::fs::rename(&partial, &files.trust_list)?;
    println!("{message}; trust list version {}", list.version);
    Ok(ExitCode::SUCCESS)
}

fn install(installed: &Path, offered: &Path, roots: &[RootPublicKey]) -> Result<ExitCode> {
    let bytes = read(offered)?;
    let (was, list) = if installed.exists() {
        let current =
            ehac_pass::VerifiedTrustList::load(&read(installed)?, roots).context("the installed trust list no longer verifies")?;
        match current.update(&bytes, roots) {
            Ok(list) => (Some(current.list().version), list),
            Err(refused @ (ehac_pass::trust::TrustError::Rollback { .. } | ehac_pass::trust::TrustError::NotNewer(_))) => {
                println!("kept trust list version {}: {refused}", current.list().version);
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e).context("offered trust list refused"),
        }
    } else {
        (None, ehac_pass::VerifiedTrustList::load(&bytes, roots).context("offered trust list refused")?)
    };
    let partial = installed.with_extension("partial");
    write(&partial, &bytes)?;
    std::fs::rename(&partial, installed)?;
    let was = was.map_or_else(|| "none".to_owned(), |v| v.to_string());
    println!("installed trust list version {} (was {was})", list.list().version);
    Ok(ExitCode::SUCCESS)
}

fn print_verdict(verdict: &Verdict) -> ExitCode {
    let view = |view: &ehac_pass::OfficerView| {
        println!("  traveller:  {}", view.traveller_name);
        println!("  born:       {}", view.date_of_birth);
        println!("  flight:     {}", view.flight);
        println!("  arrival:    {} on {}", view.arrival_airport, view.arrival_date);
        println!("  triage:     {}", view.triage.as_str().to_uppercase());
        println!("  pass:       {} (issued by {}, expires {})", view.pass_id, view.issuer, view.expires_at);
    };
    match verdict {
        Verdict::Accept(v) => {
            println!("ACCEPT");
            view(v);
            ExitCode::SUCCESS
        }
        Verdict::Reject { reason } => {
            println!("REJECT {reason}");
            ExitCode::from(1)
        }
        Verdict::Degraded { reason, view: v } => {
            println!("DEGRADED {reason}");
            if let Some(v) = v {
                view(v);
            }
            ExitCode::from(2)
        }
    }
}

fn render_png(code: &qrcode::QrCode) -> image::GrayImage {
    // 8 pixels a module and the 4-module quiet zone the standard asks for.
    const SCALE: u32 = 8;
    const QUIET: u32 = 4;
    let width = code.width() as u32;
    let side = (width + 2 * QUIET) * SCALE;
    let colors = code.to_colors();
    image::GrayImage::from_fn(side, side, |x, y| {
        let (mx, my) = ((x / SCALE).wrapping_sub(QUIET), (y / SCALE).wrapping_sub(QUIET));
        let dark = mx < width && my < width && colors[(my * width + mx) as usize] == qrcode::Color::Dark;
        image::Luma([if dark { 0 } else { 255 }])
    })
}

fn decode_qr(png: &Path) -> Result<String> {
    let image = image::open(png).with_context(|| format!("reading {}", png.display()))?.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(image.width() as usize, image.height() as usize, |x, y| {
        image.get_pixel(x as u32, y as u32).0[0]
    });
    let grids = prepared.detect_grids();
    let grid = grids.first().context("no QR code found in the image")?;
    let (_, content) = grid.decode().context("the QR code does not decode")?;
    Ok(content)
}

fn random_pass_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id)).context("reading /dev/urandom")?;
    Ok(id)
}

fn parse_kid(text: &str) -> Result<Kid> {
    Kid::from_hex(text).with_context(|| format!("{text:?} is not a kid (16 hex digits)"))
}

fn read_roots(paths: &[PathBuf]) -> Result<Vec<RootPublicKey>> {
    paths
        .iter()
        .map(|path| {
            let text = read_text(path)?;
            // A root private key file also gives its public half (handy on the signing host).
            RootPublicKey::parse(&text)
                .or_else(|_| RootKey::parse(&text).map(|k| k.public()))
                .with_context(|| format!("root key {}", path.display()))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Private keys are readable by their owner only.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (an existing key is never overwritten)", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}
