//! The address a `replayscope serve` child process logs it bound (`serving on ADDR …`), read
//! from its stderr; the rest of its log is drained so the server never blocks on a full pipe.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Waits for the `serving on ADDR` log line of `child` (spawned with stderr piped).
pub fn serving_address(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let Some(line) = lines.next() else {
            panic!("serve exited before it was serving:\n{}", seen.join("\n"));
        };
        let line = line.unwrap();
        seen.push(line.clone());
        if let Some(rest) = line.split("serving on ").nth(1) {
            break rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect::<String>();
        }
    };
    std::thread::spawn(move || {
        for l in lines {
            if std::env::var_os("SHOW_SERVE_LOG").is_some() {
                eprintln!("serve: {}", l.unwrap_or_default());
            }
        }
    });
    addr
}
