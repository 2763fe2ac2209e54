//! One line of progress per benchmark phase: a live spinner on a terminal, plain lines (at most
//! one every few seconds) in CI logs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Phase {
    name: String,
    bar: ProgressBar,
    started: Instant,
    last_plain: Arc<Mutex<Instant>>,
}

impl Phase {
    pub fn start(name: &str) -> Phase {
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {msg}").expect("the template is valid"));
        bar.set_prefix(name.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        if bar.is_hidden() {
            eprintln!("bench: {name}...");
        }
        Phase { name: name.to_owned(), bar, started: Instant::now(), last_plain: Arc::new(Mutex::new(Instant::now())) }
    }

    pub fn set(&self, message: impl Into<String>) {
        let message = message.into();
        if self.bar.is_hidden() {
            let mut last = self.last_plain.lock().unwrap();
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                eprintln!("bench: {}: {message}", self.name);
            }
        } else {
            self.bar.set_message(message);
        }
    }

    /// Ends the phase with a result line, printed on stdout.
    pub fn done(self, result: impl std::fmt::Display) {
        self.bar.finish_and_clear();
        println!("{:<28} {result}  ({:.1}s)", self.name, self.started.elapsed().as_secs_f64());
    }
}
