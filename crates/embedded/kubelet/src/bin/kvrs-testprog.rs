//! `kvrs-testprog`: the program behind the test image `kubevirt-rs/testprog`. Its arguments are
//! steps run in order:
//!
//! | step | does |
//! | --- | --- |
//! | `echo TEXT` / `stderr TEXT` | prints a line to stdout / stderr |
//! | `env` | prints the environment, sorted |
//! | `cat FILE` / `ls DIR` | prints a file / a directory's entries |
//! | `write FILE TEXT` | writes a file |
//! | `sleep SECS` | sleeps |
//! | `exit N` | exits with N |
//! | `serve PORT` | serves HTTP on PORT in the background (`/` answers `hello from <host>`) |
//! | `health-file PATH` | `/healthz` answers 500 while PATH exists, else 200 |
//! | `get ADDR:PORT` | HTTP GET / and prints the body |
//! | `term-grace SECS` | on SIGTERM: prints `got SIGTERM`, waits SECS, exits 0 |
//! | `ignore-term` | ignores SIGTERM |
//! | `alloc MB` | allocates and touches MB mebibytes (kept) |
//! | `hang` | waits forever |
//!
//! With no step left it exits 0, unless it serves HTTP (then it waits).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

fn serve(port: u16, health: Arc<Mutex<Option<PathBuf>>>) {
    let l = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("serve {port}: {e}");
            std::process::exit(3);
        }
    };
    println!("serving on {port}");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let health = health.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut line = String::new();
                let mut reader = BufReader::new(&s);
                let _ = reader.read_line(&mut line);
                // Read the headers too: closing with unread input would reset the connection.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let host = nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (code, body) = if path == "/healthz" {
                    let unhealthy = health
                        .lock()
                        .ok()
                        .and_then(|h| h.clone())
                        .is_some_and(|p| p.exists());
                    if unhealthy {
                        (500, "unhealthy".to_string())
                    } else {
                        (200, "ok".to_string())
                    }
                } else {
                    (200, format!("hello from {host}"))
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
}

fn get(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let mut serving = false;
    let health: Arc<Mutex<Option<PathBuf>>> = Arc::new(Mutex::new(None));
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let arg = |i: usize| -> String {
        args.get(i).cloned().unwrap_or_else(|| {
            eprintln!("missing argument after {:?}", args.get(i.wrapping_sub(1)));
            std::process::exit(2)
        })
    };
    while i < args.len() {
        let step = args[i].as_str();
        i += 1;
        match step {
            "echo" => {
                println!("{}", arg(i));
                i += 1;
            }
            "stderr" => {
                eprintln!("{}", arg(i));
                i += 1;
            }
            "env" => {
                let mut v: Vec<(String, String)> = std::env::vars().collect();
                v.sort();
                for (k, val) in v {
                    println!("{k}={val}");
                }
            }
            "cat" => {
                let p = arg(i);
                i += 1;
                match std::fs::read_to_string(&p) {
                    Ok(s) => print!("{s}"),
                    Err(e) => println!("cat {p}: {e}"),
                }
                println!();
            }
            "ls" => {
                let p = arg(i);
                i += 1;
                let mut names: Vec<String> = std::fs::read_dir(&p)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                println!("{}", names.join(" "));
            }
            "write" => {
                let (p, t) = (arg(i), arg(i + 1));
                i += 2;
                if let Err(e) = std::fs::write(&p, t) {
                    println!("write {p}: {e}");
                }
            }
            "detach" => {
                // A `sleep SECS` in its own session, reparented to init: it escapes the
                // container's process group as a daemonizing QEMU does.
                let secs = arg(i);
                i += 1;
                if let Err(e) = std::process::Command::new("setsid")
                    .args(["-f", "sleep", &secs])
                    .status()
                {
                    println!("detach: {e}");
                }
            }
            "sleep" => {
                let s: f64 = arg(i).parse().unwrap_or(1.0);
                i += 1;
                std::thread::sleep(Duration::from_secs_f64(s));
            }
            "exit" => {
                let _ = std::io::stdout().flush();
                std::process::exit(arg(i).parse().unwrap_or(1));
            }
            "serve" => {
                serve(arg(i).parse().unwrap_or(8080), health.clone());
                i += 1;
                serving = true;
            }
            "health-file" => {
                if let Ok(mut h) = health.lock() {
                    *h = Some(PathBuf::from(arg(i)));
                }
                i += 1;
            }
            "get" => {
                match get(&arg(i)) {
                    Ok(b) => println!("{b}"),
                    Err(e) => println!("get {}: {e}", arg(i)),
                }
                i += 1;
            }
            "term-grace" | "ignore-term" => {
                let grace: Option<f64> =
                    (step == "term-grace").then(|| arg(i).parse().unwrap_or(1.0));
                if grace.is_some() {
                    i += 1;
                }
                let mut set = SigSet::empty();
                set.add(Signal::SIGTERM);
                let _ = set.thread_block();
                std::thread::spawn(move || {
                    loop {
                        if set.wait().is_ok() {
                            println!("got SIGTERM");
                            let _ = std::io::stdout().flush();
                            if let Some(g) = grace {
                                std::thread::sleep(Duration::from_secs_f64(g));
                                println!("exiting after SIGTERM");
                                let _ = std::io::stdout().flush();
                                std::process::exit(0);
                            }
                        }
                    }
                });
            }
            "alloc" => {
                let mb: usize = arg(i).parse().unwrap_or(1);
                i += 1;
                let mut v = vec![0u8; mb << 20];
                for b in v.iter_mut().step_by(4096) {
                    *b = 1;
                }
                println!("allocated {mb} MiB");
                kept.push(v);
            }
            "hang" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            other => {
                eprintln!("unknown step {other:?}");
                std::process::exit(2);
            }
        }
        let _ = std::io::stdout().flush();
    }
    if serving {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
