//! The supervisor's record of the cluster (`DATA/run/state.json`) and pid files
//! (`DATA/run/<name>.pid`: `<pid> <start time in clock ticks>`, so a recycled pid is never
//! mistaken for ours). Parsing and rendering are pure; reading `/proc` is at the bottom.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    pub name: String,
    pub pid: Option<u32>,
    pub running: bool,
    pub restarts: u32,
    /// The last exit, as `exit status: 1` or `signal: 9 (SIGKILL)`.
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub supervisor_pid: u32,
    /// `starting`, `running`, `stopping: <what>`, `stopped`.
    pub phase: String,
    pub processes: Vec<ProcessState>,
}

impl State {
    pub fn process_mut(&mut self, name: &str) -> &mut ProcessState {
        if let Some(i) = self.processes.iter().position(|p| p.name == name) {
            return &mut self.processes[i];
        }
        self.processes.push(ProcessState {
            name: name.into(),
            ..Default::default()
        });
        let last = self.processes.len() - 1;
        &mut self.processes[last]
    }
}

pub fn state_path(run_dir: &Path) -> PathBuf {
    run_dir.join("state.json")
}

pub fn pid_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.pid"))
}

/// A pid file's content.
pub fn pid_line(pid: u32, start_time: u64) -> String {
    format!("{pid} {start_time}\n")
}

pub fn parse_pid_line(s: &str) -> Option<(u32, u64)> {
    let mut it = s.split_whitespace();
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    Some((pid, start))
}

/// Field 22 (starttime) of `/proc/<pid>/stat`; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so starttime (22) is the 20th here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// One line per process for `status`.
pub fn render_processes(rows: &[(ProcessState, bool)]) -> String {
    let width = rows
        .iter()
        .map(|(p, _)| p.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:width$}  {:>8}  {:5}  RESTARTS\n",
        "PROCESS", "PID", "STATE"
    );
    for (p, alive) in rows {
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let state = if *alive { "up" } else { "down" };
        out.push_str(&format!(
            "{:width$}  {:>8}  {:5}  {}",
            p.name, pid, state, p.restarts
        ));
        if !alive && let Some(e) = &p.last_exit {
            out.push_str(&format!("  (last: {e})"));
        }
        out.push('\n');
    }
    out
}

// ---- I/O ----

/// The start time of a live process, `None` if there is none with that pid (zombies count as
/// gone: they no longer run anything).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    parse_start_time(&stat)
}

/// The pid recorded in a pid file, if that very process still runs.
pub fn live_pid(file: &Path) -> Option<u32> {
    let (pid, start) = parse_pid_line(&std::fs::read_to_string(file).ok()?)?;
    (start_time(pid)? == start).then_some(pid)
}

pub fn write_pid_file(file: &Path, pid: u32) -> std::io::Result<()> {
    let start = start_time(pid).unwrap_or(0);
    write_atomic(file, pid_line(pid, start).as_bytes())
}

pub fn write_atomic(file: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, file)
}

pub fn read_state(run_dir: &Path) -> Option<State> {
    serde_json::from_str(&std::fs::read_to_string(state_path(run_dir)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_lines_round_trip() {
        assert_eq!(parse_pid_line(&pid_line(42, 12345)), Some((42, 12345)));
        assert_eq!(parse_pid_line("42"), None);
        assert_eq!(parse_pid_line("x 1"), None);
    }

    #[test]
    fn start_time_after_odd_names() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_start_time(stat), Some(987654));
        // Our own process parses.
        let me = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert!(parse_start_time(&me).is_some());
    }

    #[test]
    fn renders_rows() {
        let rows = vec![
            (
                ProcessState {
                    name: "apiserver".into(),
                    pid: Some(10),
                    running: true,
                    restarts: 0,
                    last_exit: None,
                },
                true,
            ),
            (
                ProcessState {
                    name: "virt-controller".into(),
                    pid: Some(11),
                    running: false,
                    restarts: 2,
                    last_exit: Some("signal: 9 (SIGKILL)".into()),
                },
                false,
            ),
        ];
        let out = render_processes(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("PROCESS"));
        assert!(lines[1].contains("apiserver") && lines[1].contains(" up "));
        assert!(lines[2].contains("down") && lines[2].contains("(last: signal: 9 (SIGKILL))"));
    }

    #[test]
    fn state_process_mut_adds_once() {
        let mut s = State::default();
        s.process_mut("a").restarts = 1;
        s.process_mut("a").restarts += 1;
        assert_eq!(s.processes.len(), 1);
        assert_eq!(s.processes[0].restarts, 2);
    }
}
