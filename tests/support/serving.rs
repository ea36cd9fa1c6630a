//! The address a `replayscope serve` child process logs it bound (`serving on ADDR …`), read
//! from its stderr; the rest of its log is drained so the server never blocks on a full pipe.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Waits for the `serving on ADDR` log line of `child` (spawned with stderr piped).
pub fn serving_address(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited").unwrap();
        if let Some(rest) = line.split("serving on ").nth(1) {
            break rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect::<String>();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}
