//! What the CLI does differently on a terminal: colours on stdout (only when it is a terminal
//! and `NO_COLOR` is unset) and a progress line on stderr for long work (only when stderr is a
//! terminal). Piped or redirected output stays plain, so scripts and logs never see escapes.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether colours are wanted, given where stdout goes and `NO_COLOR`
/// (<https://no-color.org>: set to anything non-empty, it turns colours off).
pub fn colour_wanted(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// Whether stdout gets colours.
pub fn stdout_colour() -> bool {
    colour_wanted(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    )
}

/// A colour for a word that carries a judgement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tone {
    Good,
    Warn,
    Bad,
}

/// `text` in the colour of `tone` (bold), when `colour` is on.
pub fn paint(text: &str, tone: Tone, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let code = match tone {
        Tone::Good => "1;32",
        Tone::Warn => "1;33",
        Tone::Bad => "1;31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Paints the first line of `text` that starts with `prefix`, leaving the rest as it is.
pub fn paint_line(text: &str, prefix: &str, tone: Tone, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if !done && body.starts_with(prefix) {
            out.push_str(&paint(body, tone, true));
            out.push_str(&line[body.len()..]);
            done = true;
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A progress line on stderr (`⠋ reading the history … 4s`) while long work runs, redrawn
/// in place and cleared when dropped. It appears only on a terminal and only after a short
/// delay, so quick commands and piped runs print nothing.
pub struct Progress {
    running: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

/// Work shorter than this shows no progress at all.
const PROGRESS_DELAY: Duration = Duration::from_millis(400);

impl Progress {
    pub fn start(what: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { running: None };
        }
        let stop = Arc::new(AtomicBool::new(false));
        let what = what.to_string();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut drawn = false;
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                if started.elapsed() >= PROGRESS_DELAY {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2K{} {what} … {}s",
                        frames[i % frames.len()],
                        started.elapsed().as_secs()
                    );
                    let _ = err.flush();
                    drawn = true;
                    i += 1;
                }
                std::thread::park_timeout(Duration::from_millis(120));
            }
            if drawn {
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            }
        });
        Progress {
            running: Some((stop, handle)),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        let cases = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (tty, no_color, want) in cases {
            assert_eq!(colour_wanted(tty, no_color), want, "{tty} {no_color:?}");
        }
    }

    #[test]
    fn paints_one_line() {
        let text = "gate g\nVERDICT: FAIL -> ROLLBACK\n\nwhy\n";
        assert_eq!(paint_line(text, "VERDICT:", Tone::Bad, false), text);
        assert_eq!(
            paint_line(text, "VERDICT:", Tone::Bad, true),
            "gate g\n\x1b[1;31mVERDICT: FAIL -> ROLLBACK\x1b[0m\n\nwhy\n"
        );
        assert_eq!(paint("ok", Tone::Good, false), "ok");
    }
}
