//! Raw terminal mode for the console, restored when the guard drops (also while unwinding
//! from a panic), so the user's shell is never left without echo.

use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode when stdin is a terminal; `None` when it is not (pipes stay as they are).
    pub fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
